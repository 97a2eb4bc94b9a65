"""Which learnable edges make one rule: the Polars half of the rule builder (rules.py).

`remote` gives one row per edge with its remote endpoint (the destination for egress, the
source for ingress) and the rule scope it maps to, following the Calico Enterprise engine's
classification; `groups` groups those rows per peer, then address-like peers (domains,
private and public addresses) by their exact port set, with the evidence of each group.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from flowfence.calico import cidr
from flowfence.learn.model import PORT_PROTOCOLS, RuleSettings

# Calico's protocol spelling; other numbers pass through as text (the Rule checks 1-255).
_PROTOCOLS = {
    "tcp": "TCP",
    "6": "TCP",
    "udp": "UDP",
    "17": "UDP",
    "icmp": "ICMP",
    "1": "ICMP",
    "icmpv6": "ICMPv6",
    "58": "ICMPv6",
    "sctp": "SCTP",
    "132": "SCTP",
    "udplite": "UDPLite",
    "136": "UDPLite",
    "igmp": "2",
    "ipip": "4",
    "gre": "47",
    "esp": "50",
    "ah": "51",
    "vrrp": "112",
}
_GROUP = ["namespace", "direction", "scope", "action", "protocol", "peer"]
_EVIDENCE_COLUMNS = ["first_seen", "last_seen", "flows", "bytes", "days"]


def remote(edges: pl.DataFrame, settings: RuleSettings) -> pl.DataFrame:
    """One row per edge with the remote endpoint's fields and the rule scope it maps to."""
    egress = pl.col("direction") == "egress"

    def pick(dest: str, source: str) -> pl.Expr:
        return pl.when(egress).then(pl.col(dest)).otherwise(pl.col(source))

    cluster = settings.cluster_domain.lower().strip(".")
    domain = pl.element()
    domains = (
        pl.col("dest_domains")
        .list.eval(domain.str.to_lowercase().str.strip_chars_end("."))
        .list.filter(~(domain.str.ends_with("." + cluster) | (domain == cluster)))
        .list.unique()
        .list.sort()
    )
    proto = pl.col("proto").str.to_lowercase()
    frame = edges.with_row_index("edge_id").select(
        "edge_id",
        "namespace",
        "direction",
        pick("dest_type", "source_type").alias("r_type"),
        pick("dest_namespace", "source_namespace").alias("r_ns"),
        pick("dest_name_aggr", "source_name_aggr").alias("r_name"),
        pick("dest_ip", "source_ip").alias("r_ip"),
        pick("dest_labels", "source_labels").alias("labels"),
        proto.replace_strict(_PROTOCOLS, default=proto, return_dtype=pl.String).alias("protocol"),
        pl.col("dest_port").cast(pl.Int64).alias("port"),
        pl.when(egress).then(domains).otherwise(pl.lit([], pl.List(pl.String))).alias("domains"),
        pl.when(egress).then(pl.col("dest_service_namespace")).alias("svc_ns"),
        pl.when(egress).then(pl.col("dest_service_name")).alias("svc_name"),
    )
    enterprise = settings.flavor == "calico-enterprise"
    net = pl.col("r_type") == "net"
    # `aws` names one address (cidr.AWS_METADATA): the rule names it, never the public fallback,
    # which excludes link-local and would cut the metadata and DNS traffic it was learned from.
    frame = frame.with_columns(
        pl.when(net & (pl.col("r_name") == "aws") & pl.col("r_ip").is_null())
        .then(pl.lit(cidr.AWS_METADATA))
        .otherwise(pl.col("r_ip"))
        .alias("r_ip")
    )
    # Every named network but `pvt` is external: `pub`, and the other names older releases
    # wrote (`aws`); they get the public rules, the IP's or the public fallback.
    public = net & pl.col("r_name").is_not_null() & (pl.col("r_name") != "pvt")
    scope = (
        pl.when((pl.col("r_type") == "wep") & pl.col("r_ns").is_not_null())
        .then(pl.lit("Namespace"))
        .when((pl.col("r_type") == "ns") & pl.col("r_name").is_not_null())
        .then(pl.lit("NetworkSet"))
        .when(net & (pl.col("r_name") == "pvt"))
        .then(pl.lit("Private"))
        .when(
            public
            & (pl.col("domains").list.len() > 0)
            & (pl.lit(enterprise) | pl.col("r_ip").is_not_null())
        )
        .then(pl.lit("Domains"))
        .when(public & pl.col("svc_name").is_not_null() & pl.lit(settings.flavor != "kubernetes"))
        .then(pl.lit("Service"))
        .when(public)
        .then(pl.lit("Public"))
    )
    intra = (pl.col("r_ns") == pl.col("namespace")) & pl.lit(settings.intra_namespace_pass)
    has_ports = pl.col("protocol").is_in(sorted(PORT_PROTOCOLS))
    frame = frame.with_columns(scope.alias("scope")).with_columns(
        pl.when((pl.col("scope") == "Namespace") & intra)
        .then(pl.lit("Pass"))
        .otherwise(pl.lit("Allow"))
        .alias("action"),
        pl.when(has_ports).then(pl.col("port")).alias("port"),
        (has_ports & pl.col("port").is_null()).alias("no_port"),
        pl.when(pl.col("scope") == "Namespace")
        .then(pl.col("r_ns"))
        .when(pl.col("scope") == "NetworkSet")
        .then(pl.concat_str(pl.col("r_ns").fill_null(""), pl.lit("/"), pl.col("r_name")))
        .when(pl.col("scope") == "Service")
        .then(pl.concat_str(pl.col("svc_ns").fill_null(""), pl.lit("/"), pl.col("svc_name")))
        .otherwise(pl.lit(""))
        .alias("peer"),
        pl.when(pl.col("scope").is_in(["Private", "Public", "Domains"]))
        .then(pl.col("r_ip"))
        .alias("item"),
        # Only a network set's rule reads its peer's labels: the groups collected every edge's
        # label list, one list per edge, whatever its peer.
        pl.when(pl.col("scope") == "NetworkSet").then(pl.col("labels")).alias("labels"),
    )
    if enterprise:
        # Enterprise domain rules are per domain name: one row per (edge, domain).
        dom = pl.col("scope") == "Domains"
        frame = pl.concat(
            [
                frame.filter(~dom | pl.col("scope").is_null()),
                frame.filter(dom).with_columns(pl.col("domains").alias("item")).explode("item"),
            ]
        )
    family = pl.when(pl.col("item").str.contains(":")).then(6).otherwise(4)
    is_address = pl.col("scope").is_in(["Private", "Public"]) | (
        (pl.col("scope") == "Domains") & pl.lit(not enterprise)
    )
    return frame.with_columns(
        pl.when(is_address & pl.col("item").is_not_null()).then(family).alias("family"),
        # Protocol 0 (or none) cannot be written in a Calico rule (1-255): unsupported.
        pl.when(pl.col("protocol").is_not_null() & (pl.col("protocol") != "0"))
        .then(pl.col("scope"))
        .alias("scope"),
    )


def groups(remote: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Final rule groups: per peer, then address-like peers grouped by identical port set."""
    per_item = remote.group_by([*_GROUP, "item", "family"]).agg(
        pl.col("port").drop_nulls().unique().sort().alias("ports"),
        pl.col("no_port").any().alias("no_port"),
        pl.col("edge_id").unique().alias("edge_ids"),
        # Distinct label sets: the rule takes the labels common to all of them.
        pl.col("labels").drop_nulls().unique(),
        pl.col("domains").list.explode(keep_nulls=False, empty_as_null=False).unique(),
    )
    opts: dict[str, Any] = {"keep_nulls": False, "empty_as_null": False}
    groups = (
        per_item.group_by([*_GROUP, "family", "ports", "no_port"])
        .agg(
            pl.col("item").drop_nulls().unique().sort().alias("items"),
            pl.col("item").is_null().any().alias("missing"),
            pl.col("edge_ids").list.explode(**opts).unique().sort(),
            pl.col("labels").list.explode(**opts).unique(),
            pl.col("domains").list.explode(**opts).unique().sort(),
        )
        .sort([*_GROUP, "family", "ports", "no_port"], nulls_last=True)
        .with_row_index("group_id")
    )
    measures = edges.with_row_index("edge_id").select("edge_id", *_EVIDENCE_COLUMNS)
    evidence = (
        groups.select("group_id", "edge_ids")
        .explode("edge_ids")
        .join(measures, left_on="edge_ids", right_on="edge_id")
        .group_by("group_id")
        .agg(
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
            pl.col("flows").sum().cast(pl.Int64),
            pl.col("bytes").sum().cast(pl.Int64),
            pl.col("days").max(),
            pl.len().alias("edges"),
        )
    )
    return groups.join(evidence, on="group_id").sort("group_id")


def crowded_namespace_folds(
    groups: pl.DataFrame, max_rules: int, one_selector: int, chunk_budget: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """maxRules' first, lossless fold done here for (namespace, direction)s with more Namespace
    groups than `max_rules`, where fold.py would certainly apply it: the direction then has
    more rules than the limit. Per (namespace, direction, action, protocol, effective ports)
    one row per selector-sized run of peers (cut as fold.selector_chunks cuts: a running
    sum of len(name) + 4 against `chunk_budget` once the whole list exceeds `one_selector`),
    with the runs' evidence and the fold's member count. A crowded namespace then costs
    Python a few rows, not one object per peer. Returns (folds, the other groups)."""
    ns = groups.filter(pl.col("scope") == "Namespace")
    place = ["namespace", "direction"]
    crowded = ns.group_by(place).len().filter(pl.col("len") > max_rules).select(place)
    mine = ns.join(crowded, on=place, how="semi")
    rest = groups.join(mine.select("group_id"), on="group_id", how="anti")
    # A group seen without a port allows any port: its ports do not count in the fold's key.
    no_ports = pl.lit([], dtype=pl.List(pl.Int64))
    key = [*place, "action", "protocol", "no_port", "eff_ports"]
    cost = pl.col("peer").str.len_chars().cast(pl.Int64) + 4
    mine = (
        mine.with_columns(
            pl.when(pl.col("no_port")).then(no_ports).otherwise(pl.col("ports")).alias("eff_ports")
        )
        .sort([*key, "peer"])
        .with_columns(
            cost.cum_sum().over(key).alias("__running"),
            cost.sum().over(key).alias("__total"),
            pl.len().over(key).alias("members"),
        )
        .with_columns(
            pl.when(pl.col("__total") <= one_selector)
            .then(0)
            .otherwise((pl.col("__running") - 1) // chunk_budget)
            .alias("chunk")
        )
    )
    folds = (
        mine.group_by([*key, "chunk"])
        .agg(
            pl.col("peer").sort().alias("peers"),
            pl.col("members").first(),
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
            pl.col("flows").sum().cast(pl.Int64),
            pl.col("bytes").sum().cast(pl.Int64),
            pl.col("days").max(),
            pl.col("edges").sum().cast(pl.Int64),
        )
        .sort([*key, "chunk"], nulls_last=True)
    )
    return folds, rest
