"""`python -m flowfence.cli`: the same as the `flowfence` command."""

from flowfence.cli.app import main

main()
