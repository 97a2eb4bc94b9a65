"""The fixture generator: determinism, the bundled demo data, its flow features, memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from flowfence.calico.evaluate import Edge, Evaluator
from flowfence.calico.evaluate import Endpoint as EvalEndpoint
from flowfence.calico.policy_docs import load_namespaces, load_policies
from flowfence.cli import app as cli
from flowfence.core.errors import BadInput
from flowfence.fixtures import generate as fixtures_gen
from flowfence.fixtures.generate import generate, hour_budgets, topology_flows
from flowfence.fixtures.topology import Endpoint, render_trace, trace
from flowfence.flows.sources import bind_flows

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "data" / "demo"
POLICIES = ROOT / "fixtures" / "policies"
NAMESPACES = ROOT / "fixtures" / "namespaces.yaml"
# The command recorded in fixtures/README.md that wrote fixtures/data/demo.
DEMO_ARGS = [
    "--topology",
    "demo",
    "--seed",
    "7",
    "--start",
    "2026-11-01T00:00:00Z",
    "--hours",
    "24",
]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def query(con: duckdb.DuckDBPyConnection, q: str) -> list[tuple[object, ...]]:
    return con.sql(q).fetchall()


@pytest.fixture(scope="module")
def demo() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    files = sorted(str(p) for p in DEMO.rglob("*.parquet"))
    con.read_parquet(files, hive_partitioning=True).create_view("raw")
    yield con
    con.close()


# --- determinism and the bundle -------------------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "kwargs"),
    [("demo", {"hours": 3}), ("synthetic", {"hours": 2, "rows": 6000, "namespaces": 30})],
)
def test_same_seed_gives_identical_bytes(
    tmp_path: Path, topology: str, kwargs: dict[str, int]
) -> None:
    a = generate(topology, tmp_path / "a", seed=11, start=T0, **kwargs)
    b = generate(topology, tmp_path / "b", seed=11, start=T0, **kwargs)
    generate(topology, tmp_path / "c", seed=12, start=T0, **kwargs)
    assert a.files == b.files and a.rows == b.rows
    assert len(a.files) == kwargs["hours"]
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


def test_bundled_demo_is_what_the_generator_writes(tmp_path: Path) -> None:
    readme = (ROOT / "fixtures" / "README.md").read_text(encoding="utf-8")
    assert " ".join(DEMO_ARGS) in readme
    assert cli.main(["fixtures", "generate", *DEMO_ARGS, "--out", str(tmp_path)]) == 0
    fresh, bundled = tree(tmp_path), tree(DEMO)
    assert sorted(fresh) == sorted(bundled)
    assert fresh == bundled, "fixtures/data/demo drifted: rerun the command in fixtures/README.md"
    assert sum(len(b) for b in bundled.values()) < 2 * 1024 * 1024


def test_chunks_split_an_hour_into_several_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fixtures_gen, "CHUNK_FLOWS", 2000)
    result = generate(
        "synthetic", tmp_path / "s", seed=3, rows=12_000, namespaces=20, start=T0, hours=1
    )
    names = [p.name for p in result.files]
    assert len(names) >= 4 and names[:2] == ["flows-000-0.parquet", "flows-001-0.parquet"]
    assert abs(result.rows - 12_000) / 12_000 < 0.02
    con = duckdb.connect()
    counted = con.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/s/**/*.parquet')").fetchall()
    assert counted == [(result.rows,)]


def test_hour_budgets_are_exact_and_diurnal() -> None:
    budgets = hour_budgets(10_007, T0, 24)
    assert sum(budgets) == 10_007 and len(budgets) == 24
    assert budgets[15] > 2 * budgets[3]  # afternoon peak, night trough


# --- the demo data has every feature the pipeline must handle ------------------------------


def test_raw_schema_is_calicos(demo: duckdb.DuckDBPyConnection) -> None:
    types = dict(query(demo, "SELECT column_name, column_type FROM (DESCRIBE raw)"))  # type: ignore[arg-type]
    assert types["start_time"] == "BIGINT" and types["end_time"] == "BIGINT"
    assert types["dest_port"] == "INTEGER" and types["source_port"] == "INTEGER"
    assert types["source_labels"] == "STRUCT(labels VARCHAR[])"
    assert types["dest_domains"] == "VARCHAR[]"
    assert types["policies"] == "STRUCT(enforced_policies VARCHAR[], pending_policies VARCHAR[])"
    [(lo, hi, misaligned, pending_differs)] = query(
        demo,
        """SELECT min(start_time), max(end_time),
                  count(*) FILTER (WHERE start_time % 300 <> 0 OR end_time - start_time <> 300),
                  count(*) FILTER (WHERE policies.pending_policies <> policies.enforced_policies)
           FROM raw""",
    )
    assert (lo, hi) == (int(T0.timestamp()), int(T0.timestamp()) + 86400)
    assert misaligned == 0 and pending_differs == 0


def test_reporters_follow_endpoint_types(demo: duckdb.DuckDBPyConnection) -> None:
    rows = query(
        demo,
        """SELECT source_type, dest_type, list_sort(list_distinct(list(reporter)))
           FROM raw GROUP BY ALL ORDER BY ALL""",
    )
    assert rows == [
        ("net", "wep", ["dst"]),
        ("wep", "net", ["src"]),
        ("wep", "ns", ["src"]),
        ("wep", "wep", ["dst", "src"]),
    ]
    # Every pod-to-pod connection is logged by both ends in the same interval.
    [(unpaired,)] = query(
        demo,
        """SELECT count(*) FROM (
             SELECT list_sort(list_distinct(list(reporter))) AS r FROM raw
             WHERE source_type = 'wep' AND dest_type = 'wep'
             GROUP BY start_time, source_ip, dest_ip, proto, dest_port, source_port)
           WHERE r <> ['dst', 'src']""",
    )
    assert unpaired == 0


def test_dns_goes_to_kube_system_decided_by_platform(demo: duckdb.DuckDBPyConnection) -> None:
    traces = query(
        demo,
        """SELECT DISTINCT proto, policies.enforced_policies FROM raw
           WHERE reporter = 'src' AND dest_namespace = 'kube-system' AND dest_port = 53
           ORDER BY ALL""",
    )
    assert traces == [
        ("tcp", ["0|platform|gnp:platform.allow-dns|allow|1"]),
        ("tcp", ["0|platform|platform.allow-dns|allow|1"]),
        ("udp", ["0|platform|gnp:platform.allow-dns|allow|0"]),
        ("udp", ["0|platform|platform.allow-dns|allow|0"]),
    ]
    [(missing,)] = query(
        demo,
        """SELECT count(*) FROM (
             SELECT DISTINCT source_namespace FROM raw
             WHERE source_type = 'wep' AND source_namespace <> 'kube-system'
             EXCEPT
             SELECT source_namespace FROM raw
             WHERE dest_namespace = 'kube-system' AND dest_port = 53 AND dest_labels.labels
                   = ['app=coredns', 'k8s-app=kube-dns'])""",
    )
    assert missing == 0


def test_ingress_from_the_internet(demo: duckdb.DuckDBPyConnection) -> None:
    rows = query(
        demo,
        """SELECT DISTINCT source_namespace, source_name_aggr, dest_namespace, dest_port, proto,
                  dest_service_name, reporter, policies.enforced_policies
           FROM raw WHERE source_type = 'net' ORDER BY ALL""",
    )
    assert {r[:7] for r in rows} == {
        ("-", "pub", "frontend", 443, "tcp", "frontend-external", "dst")
    }
    assert {tuple(r[7]) for r in rows} == {  # type: ignore[arg-type]
        ("0|__PROFILE__|__PROFILE__.kns.frontend|allow|0",),
        ("0|__PROFILE__|pro:kns.frontend|allow|0",),
    }
    [(clients,)] = query(
        demo, "SELECT count(DISTINCT source_ip) FROM raw WHERE source_type = 'net'"
    )
    assert clients == 8


def test_egress_outside_the_cluster(demo: duckdb.DuckDBPyConnection) -> None:
    rows = query(
        demo,
        """SELECT DISTINCT source_namespace, dest_type, dest_namespace, dest_name_aggr,
                  dest_port, dest_domains
           FROM raw WHERE dest_type IN ('net', 'ns') AND proto = 'tcp'""",
    )
    assert ("payment", "net", "-", "pub", 443, ["api.stripe.com"]) in rows
    assert ("email", "net", "-", "pub", 587, ["smtp.sendgrid.net"]) in rows
    assert ("shipping", "net", "-", "pvt", 5432, []) in rows
    assert ("shipping", "ns", "-", "partner-apis", 443, []) in rows  # GlobalNetworkSet
    assert ("ads", "ns", "ads", "ad-exchanges", 443, []) in rows  # namespaced NetworkSet
    pvt_ips = query(
        demo,
        """SELECT DISTINCT dest_ip FROM raw
           WHERE source_namespace = 'shipping' AND dest_name_aggr = 'pvt' ORDER BY 1""",
    )
    assert pvt_ips == [("10.20.0.11",), ("10.20.0.12",)]
    [(services,)] = query(
        demo,
        """SELECT count(*) FROM raw WHERE dest_type <> 'wep' AND (dest_service_name <> '-'
           OR dest_service_namespace <> '-' OR dest_service_port <> '-'
           OR dest_service_port_num IS NOT NULL)""",
    )
    assert services == 0


def test_denied_flows_carry_the_deny_hit(demo: duckdb.DuckDBPyConnection) -> None:
    rows = query(
        demo,
        """SELECT DISTINCT source_namespace, dest_namespace, dest_ip, reporter,
                  replace(policies.enforced_policies[-1], '|gnp:', '|'), num_flows_completed
           FROM raw WHERE action = 'deny' ORDER BY ALL""",
    )
    assert {r[:5] for r in rows} == {
        ("ads", "postgres", "192.168.1.12", "dst", "0|platform|platform.protect-postgres|deny|0"),
        (
            "recommendation",
            "-",
            "169.254.169.254",
            "src",
            "0|platform|platform.block-metadata|deny|0",
        ),
    }
    assert all(r[5] == 0 for r in rows)
    # The ads side of the denied connection still logs an allow, as Felix does.
    [(allowed,)] = query(
        demo,
        """SELECT count(*) FROM raw WHERE source_namespace = 'ads' AND dest_namespace = 'postgres'
           AND reporter = 'src' AND action = 'allow'""",
    )
    assert allowed > 0


def test_both_hit_syntaxes_and_default_tier(demo: duckdb.DuckDBPyConnection) -> None:
    hits = {
        h for (h,) in query(demo, "SELECT DISTINCT unnest(policies.enforced_policies) FROM raw")
    }
    assert "0|__PROFILE__|__PROFILE__.kns.cart|allow|0" in hits
    assert "0|__PROFILE__|pro:kns.catalog|allow|0" in hits
    assert "1|default|monitoring/default.allow-scrape|allow|0" in hits
    assert "1|default|np:monitoring/allow-scrape|allow|0" in hits
    assert "0|platform|platform.allow-dns|pass|-1" in hits
    assert "0|platform|platform.protect-postgres|pass|-1" in hits
    # One Felix version per node: a row never mixes the two syntaxes.
    [(mixed,)] = query(
        demo,
        """SELECT count(*) FROM raw WHERE
             len(list_filter(policies.enforced_policies,
                             lambda h: regexp_matches(h, '^\\d+\\|[^|]+\\|(pro|gnp|np):')))
             NOT IN (0, len(policies.enforced_policies))""",
    )
    assert mixed == 0


def test_nightly_backup_happens_once_a_day(demo: duckdb.DuckDBPyConnection) -> None:
    rows = query(
        demo,
        """SELECT DISTINCT dest_name_aggr, dest_ip, dest_port,
                  strftime(to_timestamp(start_time) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M')
           FROM raw WHERE source_namespace = 'batch' AND dest_type = 'net'""",
    )
    assert rows == [("pvt", "10.20.0.50", 22, "2026-11-01 02:00")]
    [(times,)] = query(
        demo, "SELECT count(DISTINCT start_time) FROM raw WHERE source_namespace = 'batch'"
    )
    assert times == 1


def test_icmp_has_no_ports(demo: duckdb.DuckDBPyConnection) -> None:
    [(rows, with_ports)] = query(
        demo,
        """SELECT count(*), count(*) FILTER (WHERE dest_port IS NOT NULL OR source_port IS NOT NULL)
           FROM raw WHERE proto = 'icmp'""",
    )
    assert rows > 0 and with_ports == 0


def test_namespaces_file_matches_the_traffic(demo: duckdb.DuckDBPyConnection) -> None:
    doc = yaml.safe_load(NAMESPACES.read_text(encoding="utf-8"))
    assert doc["kind"] == "List"
    names = {item["metadata"]["name"] for item in doc["items"]}
    seen = {
        ns
        for (ns,) in query(
            demo,
            "SELECT source_namespace FROM raw UNION SELECT dest_namespace FROM raw",
        )
    } - {"-"}
    assert seen <= names
    quiet = {n for n in names - seen if not n.startswith(("kube-", "calico-", "tigera-"))}
    assert quiet == {"legacy-reports"}
    assert load_namespaces(NAMESPACES)["frontend"]["kubernetes.io/metadata.name"] == "frontend"


def test_sources_binds_the_demo_data() -> None:
    con = duckdb.connect()
    bound = bind_flows(con, DEMO, since=T0, until=datetime(2026, 11, 2, tzinfo=UTC))
    assert bound.hive and len(bound.files) == 24
    [(rows, nulls)] = query(
        con, "SELECT sum(rows), count(*) FILTER (WHERE dest_namespace IS NULL) FROM flows"
    )
    assert rows == 28805 and nulls > 0  # '-' placeholders normalised to NULL


# --- the existing policy set explains every generated trace ---------------------------------


@pytest.mark.parametrize("topology", ["demo", "synthetic"])
def test_policy_set_explains_every_trace(topology: str) -> None:
    evaluator = Evaluator(load_policies(POLICIES), namespaces=load_namespaces(NAMESPACES))

    def side(e: Endpoint) -> EvalEndpoint:
        return EvalEndpoint(
            type=e.type, namespace=e.namespace, name=e.name, ip=e.ip, labels=e.labels
        )

    checked = 0
    for flow in topology_flows(topology, seed=7, namespaces=30):
        svc = flow.service
        edge = Edge(
            side(flow.src),
            side(flow.dst),
            flow.port,
            flow.proto,
            svc.namespace if svc else None,
            svc.name if svc else None,
            flow.domains,
        )
        for reporter in flow.reporters():
            verdict = evaluator.evaluate(edge, "egress" if reporter == "src" else "ingress")
            # The evaluator speaks the 3.32 syntax; render ours the same way to compare.
            assert verdict.trace == render_trace(trace(flow, reporter), "node-3"), (flow, reporter)
            checked += 1
    assert checked > 100


# --- synthetic skew and memory ---------------------------------------------------------------


def test_synthetic_traffic_is_zipf_skewed(tmp_path: Path) -> None:
    generate("synthetic", tmp_path, seed=5, rows=40_000, namespaces=40, start=T0, hours=2)
    con = duckdb.connect()
    shares = [
        r[0]
        for r in con.sql(
            f"""SELECT count(*) / sum(count(*)) OVER () FROM read_parquet('{tmp_path}/**/*.parquet')
                WHERE reporter = 'src' AND dest_type = 'wep' AND source_namespace LIKE 'ns-%'
                  AND dest_namespace LIKE 'ns-%'
                GROUP BY source_namespace, dest_namespace ORDER BY 1 DESC"""
        ).fetchall()
    ]
    median = shares[len(shares) // 2]
    assert len(shares) > 100
    assert shares[0] > 20 * median
    assert sum(shares[:10]) > 0.3  # a few hot pairs carry a third of the traffic


def _generate_in_child(out: Path, rows: int) -> dict[str, float]:
    """Generate in a fresh interpreter and report peak RSS, and the RSS right after the imports.

    The import baseline (interpreter, numpy, pyarrow, polars, duckdb) differs between machines by
    tens of MB, so the bound is on what generating adds on top of it.
    """
    script = textwrap.dedent(
        f"""
        import json, resource
        from datetime import datetime, UTC
        from pathlib import Path
        from flowfence.fixtures.generate import generate
        def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = peak()
        r = generate("synthetic", Path({str(out)!r}), seed=1, rows={rows},
                     namespaces=100, start=datetime(2026, 11, 1, tzinfo=UTC), hours=1)
        print(json.dumps({{"rows": r.rows, "files": len(r.files), "base_mb": base,
                          "rss_mb": peak()}}))
        """
    )
    cmd = [sys.executable, "-c", script]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    report: dict[str, float] = json.loads(done.stdout)
    return report


def test_memory_stays_bounded_for_a_million_rows(tmp_path: Path) -> None:
    small = _generate_in_child(tmp_path / "small", 200_000)
    big = _generate_in_child(tmp_path / "big", 1_000_000)
    assert abs(big["rows"] - 1_000_000) < 10_000
    assert big["files"] >= 3  # the hour was written in chunks
    grown_small = small["rss_mb"] - small["base_mb"]
    grown_big = big["rss_mb"] - big["base_mb"]
    # Chunked writing: five times the rows costs (almost) no more memory than one chunk does.
    # Held whole, a million rows would add several hundred MB more than 200k rows do.
    assert grown_big < grown_small + 64, (small, big)
    assert grown_big < 512, big


# --- CLI and API errors ----------------------------------------------------------------------


def test_cli_generates_and_refuses_to_clobber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flows"
    args = ["fixtures", "generate", "--topology", "synthetic", "--namespaces", "10",
            "--rows", "500", "--hours", "2", "--seed", "1", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    assert "rows in 2 files" in capsys.readouterr().out
    before = tree(out)
    assert cli.main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite"]) == 0
    assert tree(out) == before
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert cli.main([*args, "--overwrite"]) == 2
    assert (out / "notes.txt").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--topology", "mesh"],
        ["--start", "2026-11-01T00:30:00Z"],
        ["--start", "2026-11-01T00:00:00"],
        ["--start", "tomorrow"],
        ["--hours", "2", "--days", "1"],
        ["--hours", "0"],
        ["--rows", "0"],
        ["--seed", "-1"],
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path: Path, extra: list[str]) -> None:
    assert cli.main(["fixtures", "generate", "--out", str(tmp_path / "x"), *extra]) == 2
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_api_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="topology"):
        generate("mesh", tmp_path, seed=1, start=T0)
    with pytest.raises(BadInput, match="namespaces"):
        generate("synthetic", tmp_path, seed=1, start=T0, namespaces=0)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(BadInput, match="not a directory"):
        generate("demo", tmp_path / "file", seed=1, start=T0)


def test_naive_start_is_utc(tmp_path: Path) -> None:
    a = generate("demo", tmp_path / "a", seed=2, start=datetime(2026, 11, 1, 5), hours=1)
    b = generate(
        "demo", tmp_path / "b", seed=2, start=datetime(2026, 11, 1, 5, tzinfo=UTC), hours=1
    )
    assert a.files == b.files == (Path("date=2026-11-01/hour=05/flows-000-0.parquet"),)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


# --- the large topology (benchmarks) -----------------------------------------------------------


def test_large_topology_has_the_shape_of_a_big_cluster() -> None:
    """What bench/ relies on: 120,000+ distinct public clients to a few frontends, thousands of
    public servers (a third by domain), private hosts, network sets, and every workload calling
    a long tail of peers on several ports; all of it expressible as raw rows (traces)."""
    from flowfence.fixtures.large import large
    from flowfence.fixtures.rows import Templates

    flows = large(40, seed=3)
    clients = {f.src.ip for f in flows if f.src.type == "net"}
    frontends = {(f.dst.namespace, f.dst.name) for f in flows if f.src.type == "net"}
    servers = [f for f in flows if f.dst.type == "net" and f.dst.name == "pub"]
    assert len(clients) >= 120_000 and len(frontends) <= 6
    assert len({f.dst.ip for f in servers}) >= 4_000
    assert {bool(f.domains) for f in servers} == {True, False}
    assert any(f.dst.name == "pvt" for f in flows) and any(f.dst.type == "ns" for f in flows)
    ports = {f.port for f in flows if f.src.type == f.dst.type == "wep"}
    assert len(ports) >= 6
    peers: dict[str, set[str]] = {}
    for f in flows:
        if f.src.type == f.dst.type == "wep" and f.src.namespace and f.dst.namespace:
            peers.setdefault(f.src.namespace, set()).add(f.dst.namespace)
    assert max(len(p) for p in peers.values()) >= 30  # near all 40 namespaces: a long tail
    assert large(40, seed=3) == flows  # deterministic
    templates = Templates.build(flows)  # every flow has a trace Felix could log
    assert len(templates.dest_port) >= len(flows)
