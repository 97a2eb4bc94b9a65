"""The `flowfence` command line: the typer app and one thin module per subcommand."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc, read from this variable when Polars is first loaded, so it must
# be set before anything imports polars) keeps freed pages for 10 s by default: the copies a
# run's sorts, joins and group-bys free stayed resident and stacked up across stages. Returning
# them at once (decay 0) took ~100 MB off the peak of the 20M-row benchmark but made every
# large allocation fault its pages in again: the steady hour took 22.2 s against 15.3 s with
# pages returned by a background thread after 1 s, the cold run 60.5 s against 52.3 s (peak
# 1,434 MB against 1,543 MB). A value set by the user is kept.
os.environ.setdefault(
    "_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
)
