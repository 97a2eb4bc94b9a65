"""The `flowfence` command line: the typer app and one thin module per subcommand."""
