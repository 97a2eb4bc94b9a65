# %% [markdown]
# # Exploring flow logs with flowfence
#
# A jupytext "percent" notebook: plain Python, diffable, runnable as a script
# (`.venv/bin/python notebooks/explore_flows.py [FLOWS]`) or opened in Jupyter with jupytext.
# It uses the same loader (`flowfence.sources`) and the same SQL (`sql/edges.sql`) as the job,
# so what you see here is what the recommender sees.

# %%
from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl

from flowfence import edges, sources

FLOWS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("fixtures/data/demo")
con = duckdb.connect()
bound = sources.bind_flows(con, FLOWS)
print(f"{len(bound.files)} files, hive={bound.hive}")

# %% [markdown]
# ## Distinct edges: the unit every later stage works on

# %%
all_edges = edges.aggregate(con)
print(all_edges.height, "distinct edges from", int(all_edges["rows"].sum()), "rows")

# %% [markdown]
# ## Namespace-to-namespace traffic matrix (allowed pod-to-pod flows, source-reported)

# %%
pods = all_edges.filter(
    (pl.col("reporter") == "src")
    & (pl.col("action") == "allow")
    & (pl.col("source_type") == "wep")
    & (pl.col("dest_type") == "wep")
)
matrix = (
    pods.group_by("source_namespace", "dest_namespace")
    .agg(pl.col("flows").sum())
    .pivot(on="dest_namespace", index="source_namespace", values="flows")
    .sort("source_namespace")
    .fill_null(0)
)
print(matrix)

# %% [markdown]
# ## Top talkers by bytes

# %%
top = (
    all_edges.group_by("source_namespace", "dest_namespace", "dest_name_aggr")
    .agg(pl.col("bytes").sum(), pl.col("flows").sum())
    .sort("bytes", descending=True)
    .head(10)
)
print(top)

# %% [markdown]
# ## Denied flows

# %%
denied = all_edges.filter(pl.col("action") == "deny").select(
    "reporter", "source_namespace", "dest_namespace", "dest_port", "proto", "flows"
)
print(denied)
assert matrix.height > 0, "no pod-to-pod traffic found"
