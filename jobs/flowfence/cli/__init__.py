"""The `flowfence` command line: the typer app and one thin module per subcommand."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc, read from this variable when Polars is first loaded, so it must
# be set before anything imports polars) keeps freed pages for 10 s by default: the copies a
# run's sorts, joins and group-bys free stayed resident and stacked up across stages (~100 MB
# of the peak on the 20M-row benchmark). Returning them at once costs a few % of CPU time. A
# value set by the user is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
