"""The schemas ship inside the package with their provenance and licence, the generated
Kubernetes schema is what its script writes, and nothing in the repository reaches outside it
for them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowfence.calico import schema

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "jobs" / "flowfence" / "calico" / "schemas"
OSS = sorted(schema.CALICO_FILES.values())
ENTERPRISE = sorted([*schema.ENTERPRISE_FILES.values(), schema.ENTERPRISE_V1_SCOPE])


def test_the_package_reads_the_schemas_from_its_own_folder() -> None:
    assert Path(str(schema.schemas_dir())) == SCHEMAS


def test_every_shipped_file_is_a_crd_of_the_kind_it_is_named_for() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.yaml")) == OSS
    assert sorted(p.name for p in (SCHEMAS / "enterprise").glob("*.yaml")) == ENTERPRISE
    cluster = {"Tier", "GlobalNetworkPolicy", "StagedGlobalNetworkPolicy", "GlobalNetworkSet"}
    cluster |= {"PolicyRecommendationScope"}
    for crds in schema.CRD_SETS:
        for api_version, kind in schema.kinds(crds):
            found = schema.schema(crds, api_version, kind)
            assert found is not None and found.kind == kind
            assert found.namespaced == (kind not in cluster), kind


def test_provenance_and_licence_are_recorded() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for fact in ("v3.32.1", "0ca9d1b93644778cafdf1812f3dda02ac0c361e8", "api/config/crd/",
                 "v1.43.0", "22d717f8e934e78cd34dd79bd8d6dd0bf8faf2c6",
                 "pkg/imports/crds/enterprise/v3.projectcalico.org/", "kubernetes-validate 1.37.0",
                 "v1.33.0-local-strict", "Apache-2.0"):  # fmt: skip
        assert fact in readme, fact
    for name in (*OSS, *ENTERPRISE):
        assert name in readme or name.startswith("projectcalico.org_"), name
    licence = (SCHEMAS / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence


@pytest.mark.skipif(
    importlib.util.find_spec("kubernetes_validate") is None, reason="kubernetes-validate absent"
)
def test_the_networkpolicy_schema_is_what_the_script_writes() -> None:
    script = REPO / "tests" / "regenerate_networkpolicy_schema.py"
    spec = importlib.util.spec_from_file_location("regenerate_networkpolicy_schema", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stored = (SCHEMAS / schema.NETWORK_POLICY_SCHEMA).read_text(encoding="utf-8")
    assert module.text() == stored
    # Standalone: every reference points inside the file.
    refs = [line for line in stored.splitlines() if '"$ref"' in line]
    assert refs and all('"#/$defs/' in line for line in refs)
    assert set(json.loads(stored)["$defs"]) >= {"io.k8s.api.networking.v1.NetworkPolicySpec"}


def test_nothing_in_the_repository_reads_the_shared_folder() -> None:
    # The patterns are split so that this file does not find itself.
    needles = ("../" + "shared", "/work/" + "shared", "FLOWFENCE_" + "SHARED")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    hits = []
    for name in listed.stdout.splitlines():
        path = REPO / name
        if not path.is_file() or path.suffix in (".parquet", ".png", ".gz", ".zst"):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        hits += [f"{name}: {n}" for n in needles if n in text]
    assert hits == []


def test_the_installed_package_loads_every_schema_in_a_fresh_interpreter() -> None:
    probe = (
        "from flowfence.calico import schema;"
        "n = sum(schema.schema(c, a, k) is not None "
        "for c in schema.CRD_SETS for a, k in schema.kinds(c));"
        "print(n)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(schema.kinds("calico")) + len(schema.kinds("calico-enterprise"))
    assert yaml.safe_load((SCHEMAS / OSS[0]).read_text(encoding="utf-8"))["kind"] == (
        "CustomResourceDefinition"
    )
