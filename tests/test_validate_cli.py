"""`flowfence validate DIR` through the CLI, and the check every run makes before writing."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from conftest import FLOW_NOW, CliResult, DemoInputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowfence.calico import schema_tree

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
Runner = Callable[[Sequence[object]], CliResult]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: team.web
  namespace: shop
spec:
  tier: team
  selector: app == 'web'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination:
        ports: [443]
"""


# ---- a policy tree ------------------------------------------------------------------------------


def test_the_bundled_existing_policies_are_valid(run_cli: Runner) -> None:
    for flavor in ("calico", "calico-enterprise"):
        result = run_cli(["validate", REPO / "fixtures" / "policies", "--flavor", flavor])
        assert result.code == 0, result.out
        assert (
            result.out == f"7 documents in 7 files ({flavor} CRDs): 7 valid, 0 skipped, 0 errors\n"
        )
        assert result.err == ""


@pytest.mark.parametrize("flavor", ["calico-enterprise", "calico", "kubernetes"])
def test_every_flavors_run_output_is_valid(run_cli: Runner, flavor: str) -> None:
    # tests/golden/<flavor> is byte for byte what `flowfence run` writes (test_run_golden.py).
    crds = "calico" if flavor == "calico" else "calico-enterprise"
    result = run_cli(
        ["validate", GOLDEN / flavor / "policies", "--flavor", crds, "--output", "json"]
    )
    assert result.code == 0, result.out
    report = json.loads(result.out)
    assert report["valid"] is True and report["errors"] == []
    assert [s["file"] for s in report["skipped"]] == ["kustomization.yaml"]
    assert report["valid_documents"] == report["documents"] - 1 > 5


def test_a_fresh_run_validates_clean(
    run_cli: Runner, demo_inputs: DemoInputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(demo_inputs.run_args(out)).code == 0
    result = run_cli(["validate", out])  # the whole output folder: decisions, state, reports
    assert result.code == 0, result.out
    assert result.out.endswith(" 0 errors\n")


def test_enterprise_fields_are_errors_for_open_source_calico(run_cli: Runner) -> None:
    enterprise = GOLDEN / "calico-enterprise" / "policies"
    result = run_cli(["validate", enterprise, "--flavor", "calico"])
    assert result.code == 2
    lines = [line for line in result.out.splitlines() if "domains" in line]
    assert len(lines) == 3
    assert all(": document 1 (StagedNetworkPolicy/namespace-isolation." in line for line in lines)
    assert "spec.egress[0].destination: Additional properties are not allowed" in lines[0]
    assert result.err.startswith("flowfence: ") and "errors in" in result.err


def test_errors_name_file_document_kind_name_and_field(run_cli: Runner, tmp_path: Path) -> None:
    bad = POLICY.replace("ports: [443]", "ports: [443]\n        nest: [1.2.3.4/32]")
    write(tmp_path / "ok.yaml", POLICY)
    write(tmp_path / "team" / "multi.yml", f"{POLICY}---\n{bad}---\n")
    write(tmp_path / "team" / "tier.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\n"
          "metadata: {name: default}\nspec: {order: 1000000, defaultAction: Pass}\n")  # fmt: skip
    write(tmp_path / "broken.yaml", "kind: [unclosed\n")
    result = run_cli(["validate", tmp_path])
    assert result.code == 2
    lines = result.out.splitlines()
    assert lines[0].startswith("broken.yaml: document 1: cannot parse YAML: ")
    assert lines[0].endswith(" (line 2, column 1)")  # the wording is libyaml's or PyYAML's
    assert lines[1:] == [
        "team/multi.yml: document 2 (NetworkPolicy/team.web): spec.egress[0].destination: "
        "Additional properties are not allowed ('nest' was unexpected)",
        "team/tier.yaml: document 1 (Tier/default): spec.defaultAction: "
        "the default tier's defaultAction must be Deny",
        "4 documents in 4 files (calico-enterprise CRDs): 2 valid, 0 skipped, 3 errors",
    ]
    assert result.err == "flowfence: 3 errors in 3 of 4 files\n"


def test_kustomizations_and_unknown_kinds_are_skipped(run_cli: Runner, tmp_path: Path) -> None:
    write(tmp_path / "kustomization.yaml", "resources: [p.yaml]\n")
    write(tmp_path / "p.yaml", POLICY)
    write(tmp_path / "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    write(tmp_path / "scope.yaml", "apiVersion: projectcalico.org/v3\n"
          "kind: PolicyRecommendationScope\nmetadata: {name: default}\nspec: {}\n")  # fmt: skip
    write(tmp_path / ".git" / "x.yaml", "not: [valid\n")  # hidden folders are not the tree
    write(tmp_path / "notes.txt", "not yaml")
    result = run_cli(["validate", tmp_path, "--flavor", "calico", "--output", "json"])
    assert result.code == 0, result.out
    report = json.loads(result.out)
    skipped = {s["file"]: s["message"] for s in report["skipped"]}
    assert (
        skipped
        == {
            "cm.yaml": "no schema for v1 ConfigMap in the calico CRDs",
            "kustomization.yaml": "a kustomization, not a Kubernetes object",
            "scope.yaml": "no schema for projectcalico.org/v3 PolicyRecommendationScope in the "
            "calico CRDs (an Enterprise kind: --flavor calico-enterprise checks it)",
        }
        or skipped
    )


def test_one_file_and_missing_paths(run_cli: Runner, tmp_path: Path) -> None:
    assert run_cli(["validate", write(tmp_path / "p.yaml", POLICY)]).code == 0
    missing = run_cli(["validate", tmp_path / "nowhere"])
    assert missing.code == 2 and "nowhere: no such file or directory" in missing.err
    assert missing.out == ""


def test_hostile_yaml_is_refused_not_crashed_on(run_cli: Runner, tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefgh"):
        bomb += f"{name}: &{name} [" + ", ".join([f"*{'abcdefgh'[i]}"] * 10) + "]\n"
    header = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x}\n"
    write(tmp_path / "bomb.yaml", header + "spec:\n  " + bomb.replace("\n", "\n  "))
    write(tmp_path / "loop.yaml", header + "spec: &s\n  egress: [*s]\n")
    write(tmp_path / "deep.yaml", "a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\xff\xfe garbage")
    write(tmp_path / "ansi.yaml", header.replace("name: x", 'name: "\\e[31mred\\u202e"')
          + 'spec: {selector: "a == \\"\\e[2J\\"", types: ["\\e]0;title\\a"]}\n')  # fmt: skip
    result = run_cli(["validate", tmp_path])
    assert result.code == 2
    assert "\x1b" not in result.out and "\u202e" not in result.out
    out = result.out
    # The bounded loader (core/yaml_loader) refuses both before building them.
    assert "bomb.yaml: document 1: refused: aliases expand it beyond 10000 extra nodes" in out
    assert "loop.yaml: document 1: refused: an alias refers to a node that contains it" in out
    assert "deep.yaml: document 1: cannot parse YAML" in out
    assert "binary.yaml: document 1: " in out
    assert "ansi.yaml: document 1 (NetworkPolicy/\\x1b[31mred\\u202e): metadata.name" in out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_a_report(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.yaml"
        path.write_bytes(data)
        report = schema_tree.check_tree(path, "calico-enterprise")
    text = schema_tree.to_text(report)
    assert all(line.isprintable() for line in text.splitlines())
    json.loads(schema_tree.to_json(report))


# ---- the check every run makes -----------------------------------------------------------------


def test_a_run_whose_output_is_invalid_writes_nothing_and_exits_1(
    run_cli: Runner, demo_inputs: DemoInputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(demo_inputs.run_args(out)).code == 0
    # A hand edit of the policy, kept by the decision (--keep-edits), which freezes it into
    # the next output (an edit nobody kept is not frozen: test_frozen_edits.py).
    path = out / "policies" / "cart.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["spec"]["ingress"][0]["destination"]["nest"] = ["x"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    accepted = run_cli(["accept", "cart", "--out", out, "--reason", "r", "--author", "a",
                        "--now", FLOW_NOW, "--keep-edits"])  # fmt: skip
    assert accepted.code == 0, accepted.err
    before = tree(out)
    later = [a if a != FLOW_NOW else "2026-11-02T01:00:00Z" for a in demo_inputs.run_args(out)]
    result = run_cli(later)
    assert result.code == 1
    assert "nothing was written" in result.err
    assert "policies/cart.yaml: document 1 (StagedNetworkPolicy/namespace-isolation.cart): " in (
        result.err
    )
    assert "spec.ingress[0].destination: Additional properties are not allowed ('nest' was " in (
        result.err
    )
    assert tree(out) == before  # policies, reports, decisions and state


def test_check_rendered_holds_a_run_to_its_own_layout() -> None:
    policy = POLICY.encode()
    kustomization = (
        b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        b"resources:\n- shop.yaml\n"
    )
    good = {"policies/kustomization.yaml": kustomization, "policies/shop.yaml": policy}
    assert schema_tree.check_rendered(good, "calico") == ()
    stale = {**good, "policies/db.yaml": policy}
    assert [e.file for e in schema_tree.check_rendered(stale, "calico")] == [
        "policies/kustomization.yaml"
    ]
    two = {**good, "policies/shop.yaml": policy + b"---\n" + policy}
    assert "2 documents, not one" in schema_tree.check_rendered(two, "calico")[0].message
    assert (
        "not a kind kubernetes writes" in schema_tree.check_rendered(good, "kubernetes")[0].message
    )
    unnamed = {**good, "policies/shop.yaml": policy.replace(b"  namespace: shop\n", b"")}
    assert schema_tree.check_rendered(unnamed, "calico")[0].path == "metadata.namespace"
