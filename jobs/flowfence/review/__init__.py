"""The review workflow: decisions, drift of frozen policies, the change set, GitOps."""
