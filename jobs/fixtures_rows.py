"""Turns logical flows into raw flow-log rows, one chunk at a time, without per-row Python.

Every (flow, reporter) pair is a *template* row holding the strings. A chunk samples flows by
weight with seeded uniforms from `pyarrow.compute.random`, draws counters with Polars
expressions, expands each flow into its reporters' rows, and refers to the templates through
dictionary-encoded Arrow columns, so a million-row chunk costs a few integer columns, not a
million copies of each string.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from flowfence.fixtures_topology import Flow, render_trace, trace, verdict

INTERVAL_S = 300  # Calico's default 5-minute aggregation interval
INTERVALS_PER_HOUR = 3600 // INTERVAL_S
EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999  # Linux ip_local_port_range default

_STRING_COLUMNS = (
    "source_type", "source_namespace", "source_name_aggr", "source_ip",
    "dest_type", "dest_namespace", "dest_name_aggr", "dest_ip",
    "proto", "action", "reporter",
    "dest_service_namespace", "dest_service_name", "dest_service_port", "host",
)  # fmt: skip
_LIST_COLUMNS = ("source_labels", "dest_labels", "dest_domains", "enforced_policies",
                 "pending_policies")  # fmt: skip


def _dash(value: str | None) -> str:
    return "-" if value is None else value


@dataclass(frozen=True)
class Templates:
    """The template rows and, per flow, where its rows start and how many there are."""

    strings: dict[str, pa.Array]
    lists: dict[str, pa.Array]
    dest_port: pa.Array
    service_port_num: pa.Array
    is_src: pl.Series  # per template
    flows: pl.DataFrame  # per flow: first, nrep, weight, nightly, bytes, ratio, denied, icmp

    @staticmethod
    def build(flows: tuple[Flow, ...]) -> Templates:
        strings: dict[str, list[str | None]] = {c: [] for c in _STRING_COLUMNS}
        lists: dict[str, list[list[str]]] = {c: [] for c in _LIST_COLUMNS}
        ports: list[int | None] = []
        svc_ports: list[int | None] = []
        per_flow: dict[str, list[float | int | bool]] = {
            k: []
            for k in ("first", "nrep", "weight", "nightly", "bytes", "ratio", "denied", "icmp")
        }
        for flow in flows:
            reporters = flow.reporters()
            per_flow["first"].append(len(ports))
            per_flow["nrep"].append(len(reporters))
            per_flow["weight"].append(flow.weight if flow.nightly_hour is None else 0.0)
            per_flow["nightly"].append(-1 if flow.nightly_hour is None else flow.nightly_hour)
            per_flow["bytes"].append(flow.bytes_per_flow)
            per_flow["ratio"].append(flow.response_ratio)
            per_flow["icmp"].append(flow.proto == "icmp")
            denied = False
            for reporter in reporters:
                hits = trace(flow, reporter)
                host = flow.src.host if reporter == "src" else flow.dst.host
                action = verdict(hits)
                denied = denied or action == "deny"
                rendered = list(render_trace(hits, host))
                svc = flow.service
                row = {
                    "source_type": flow.src.type,
                    "source_namespace": _dash(flow.src.namespace),
                    "source_name_aggr": flow.src.name,
                    "source_ip": flow.src.ip,
                    "dest_type": flow.dst.type,
                    "dest_namespace": _dash(flow.dst.namespace),
                    "dest_name_aggr": flow.dst.name,
                    "dest_ip": flow.dst.ip,
                    "proto": flow.proto,
                    "action": action,
                    "reporter": reporter,
                    "dest_service_namespace": svc.namespace if svc else "-",
                    "dest_service_name": svc.name if svc else "-",
                    "dest_service_port": svc.port_name if svc else "-",
                    "host": host,
                }
                for column, value in row.items():
                    strings[column].append(value)
                lists["source_labels"].append(list(flow.src.labels))
                lists["dest_labels"].append(list(flow.dst.labels))
                lists["dest_domains"].append(list(flow.domains))
                lists["enforced_policies"].append(rendered)
                lists["pending_policies"].append(rendered)
                ports.append(flow.port)
                svc_ports.append(svc.port if svc else None)
            per_flow["denied"].append(denied)
        return Templates(
            strings={c: pa.array(v, pa.string()) for c, v in strings.items()},
            lists={c: pa.array(v, pa.list_(pa.string())) for c, v in lists.items()},
            dest_port=pa.array(ports, pa.int32()),
            service_port_num=pa.array(svc_ports, pa.int32()),
            is_src=pl.Series("is_src", [r == "src" for r in strings["reporter"]]),
            flows=pl.DataFrame(per_flow),
        )

    def nightly(self, hour_of_day: int) -> pl.DataFrame:
        """The once-a-day flows due at `hour_of_day`, in the hour's first interval."""
        due = self.flows.with_row_index("flow").filter(pl.col("nightly") == hour_of_day)
        return due.select(pl.col("flow").cast(pl.Int64), interval=pl.lit(0, pl.Int64))

    def continuous(self) -> tuple[pl.Series, pl.Series, float]:
        """Flow ids of continuous flows, their cumulative weights in (0, 1], mean rows/flow."""
        cont = self.flows.with_row_index("id").filter(pl.col("weight") > 0)
        total = float(cont["weight"].sum())
        cdf = (cont["weight"].cum_sum() / total).alias("cdf")
        mean_rows = float((cont["weight"] * cont["nrep"]).sum()) / total
        return cont["id"], cdf, mean_rows


def uniforms(n: int, *key: object) -> pl.Series:
    """`n` uniforms in [0, 1) from a seed derived from `key`: same key, same numbers."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    seed = int.from_bytes(digest, "big") >> 1
    return pl.Series(pc.random(n, initializer=seed))


def sample_flows(t: Templates, k: int, *key: object) -> pl.DataFrame:
    """`k` continuous flows drawn by weight, each with a 5-minute interval of the hour."""
    ids, cdf, _ = t.continuous()
    pick = cdf.search_sorted(uniforms(k, *key, "flow"), side="right").clip(0, len(ids) - 1)
    interval = (uniforms(k, *key, "interval") * INTERVALS_PER_HOUR).floor().cast(pl.Int64)
    return pl.DataFrame({"flow": ids.gather(pick).cast(pl.Int64), "interval": interval})


def chunk_table(t: Templates, picked: pl.DataFrame, hour_start: int, *key: object) -> pa.Table:
    """The raw rows for the sampled `picked` (flow, interval) frame, as an Arrow table."""
    picked = picked.sort("interval", "flow", maintain_order=True)
    k = picked.height
    u = {name: uniforms(k, *key, name) for name in ("n", "z1", "z2", "r", "s", "c", "p")}
    attrs = t.flows.select(pl.all().gather(picked["flow"]))
    z = (-2.0 * u["z1"].clip(1e-12, 1.0).log()).sqrt() * (2.0 * math.pi * u["z2"]).cos()
    per_flow = pl.DataFrame(
        {
            "flow": picked["flow"],
            "interval": picked["interval"],
            "un": u["n"],
            "z": z,
            "ur": u["r"],
            "us": u["s"],
            "uc": u["c"],
            "up": u["p"],
        }
    ).hstack(attrs.drop("weight", "nightly"))
    lam = 1.0 + attrs["weight"].clip(0.0, 20.0)
    per_flow = (
        per_flow.with_columns(
            num_flows=(1 + (-(pl.col("un").clip(1e-12, 1.0)).log() * lam).floor()).cast(pl.Int64)
        )
        .with_columns(
            req=(pl.col("num_flows") * pl.col("bytes") * (0.5 * pl.col("z")).exp())
            .round()
            .cast(pl.Int64),
        )
        .with_columns(
            resp=pl.when(pl.col("denied"))
            .then(0)
            .otherwise((pl.col("req") * pl.col("ratio") * (0.5 + pl.col("ur"))).round())
            .cast(pl.Int64),
            started=pl.col("num_flows")
            - (pl.col("us") * 0.3 * pl.col("num_flows")).floor().cast(pl.Int64),
            completed=pl.when(pl.col("denied"))
            .then(0)
            .otherwise(pl.col("num_flows") - (pl.col("uc") * 0.3 * pl.col("num_flows")).floor())
            .cast(pl.Int64),
            source_port=pl.when(pl.col("icmp"))
            .then(None)
            .otherwise(
                EPHEMERAL_LOW + (pl.col("up") * (EPHEMERAL_HIGH - EPHEMERAL_LOW + 1)).floor()
            )
            .cast(pl.Int32),
        )
        .with_columns(
            pkt_req=pl.col("num_flows") * 2 + pl.col("req") // 1200,
            pkt_resp=pl.when(pl.col("resp") > 0)
            .then(pl.col("num_flows") + pl.col("resp") // 1200)
            .otherwise(0),
        )
    )
    rows = (
        per_flow.with_columns(r=pl.int_ranges(0, "nrep"))
        .explode("r")
        .with_columns(tid=(pl.col("first") + pl.col("r")).cast(pl.Int32))
    )
    src = t.is_src.gather(rows["tid"])
    rows = rows.with_columns(src=src).select(
        start_time=hour_start + pl.col("interval") * INTERVAL_S,
        end_time=hour_start + (pl.col("interval") + 1) * INTERVAL_S,
        tid=pl.col("tid"),
        num_flows=pl.col("num_flows"),
        num_flows_started=pl.col("started"),
        num_flows_completed=pl.col("completed"),
        bytes_in=pl.when(pl.col("src")).then(pl.col("resp")).otherwise(pl.col("req")),
        bytes_out=pl.when(pl.col("src")).then(pl.col("req")).otherwise(pl.col("resp")),
        packets_in=pl.when(pl.col("src")).then(pl.col("pkt_resp")).otherwise(pl.col("pkt_req")),
        packets_out=pl.when(pl.col("src")).then(pl.col("pkt_req")).otherwise(pl.col("pkt_resp")),
        source_port=pl.col("source_port"),
    )
    tid = rows["tid"].rechunk().to_arrow()
    columns: dict[str, pa.Array] = {}
    for name, values in (*t.strings.items(), *t.lists.items()):
        columns[name] = pa.DictionaryArray.from_arrays(tid, values)
    columns["dest_port"] = pc.take(t.dest_port, tid)
    columns["dest_service_port_num"] = pc.take(t.service_port_num, tid)
    for name in rows.columns:
        if name != "tid":
            columns[name] = rows[name].rechunk().to_arrow()
    return pa.table(columns)
