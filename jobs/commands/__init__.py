"""One thin module per subcommand, each exposing `register(app)`."""
