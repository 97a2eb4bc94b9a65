"""The staged-policy audit: replay observed edges through a policy set."""
