"""The run report: a model first, then its JSON and Markdown renderings."""
