"""Manifests from recommendations, deterministic to the byte, one module per flavor."""
