"""Orchestration: one recommendation run from flows to outputs, and watch mode."""
