"""Calico semantics: selectors, the policy model, the evaluator, policy-hit strings, CIDRs
and the checks on untrusted names."""
