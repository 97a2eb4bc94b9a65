"""Edges in, rules out: screening, selection, exclusion of what earlier tiers decide, rule
building, maxRules folding and stale rules."""
