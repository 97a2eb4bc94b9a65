from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flowfence.calico.schema import crd
from flowfence.cli.app import main
from flowfence.config.settings import DEFAULT_SELECTOR, Settings, load_settings
from flowfence.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CRD = "enterprise/projectcalico.org_policyrecommendationscopes.yaml"  # as shipped in the package

# What `kubectl get policyrecommendationscope default -o yaml` prints for the scope the
# operator creates, with status and server-side metadata left in.
OPERATOR_SCOPE = """\
apiVersion: projectcalico.org/v3
kind: PolicyRecommendationScope
metadata:
  creationTimestamp: "2026-10-01T09:12:44Z"
  generation: 1
  name: default
  resourceVersion: "48213"
  uid: 7f1c2a4e-0b1d-4c55-9a7e-3e2a1f0c9d11
spec:
  namespaceSpec:
    recStatus: Disabled
    selector: >-
      !(kubernetes.io/metadata.name starts with 'tigera-') &&
      !(kubernetes.io/metadata.name starts with 'calico-') &&
      !(kubernetes.io/metadata.name starts with 'kube-')
status:
  conditions:
  - status: "True"
    type: Ready
"""

FULL_SCOPE = """\
apiVersion: projectcalico.org/v3
kind: PolicyRecommendationScope
metadata:
  name: default
spec:
  interval: 2.5m
  initialLookback: 1h30m
  stabilizationPeriod: 20m
  maxRules: 30
  policiesLearningCutOff: 5
  namespaceSpec:
    recStatus: Enabled
    selector: "projectcalico.org/name in {'shop', 'db'}"
    intraNamespacePassThroughTraffic: true
    tierName: recommendations
  hostEndpointSpec:
    recommendationStatus: Disabled
    selector: all()
"""

FULL_CONFIG = """\
apiVersion: flowfence.io/v1alpha1
kind: FlowfenceConfig
tierOrder: 500.5
tierDefaultAction: Pass
flavor: calico
privateCidrCap: 4
publicCidrCap: 32
clusterCIDRs: [10.244.0.0/16, 10.96.0.0/12, "fd00:10:96::/112"]
clusterDomain: cluster.example.
staleRulePeriod: 7d
staleNamespacePeriod: 90d
lateArrivalGrace: 15m
tierOrders: {security: 100, platform: 20000, last: null}
unknownTiers: exclude
memoryLimit: 4 GiB
threads: 4
tempDir: /var/tmp/flowfence
"""


def _write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    schema = next(v for v in crd(CRD)["spec"]["versions"] if v["name"] == "v3")["schema"]
    validator = jsonschema.Draft7Validator(schema["openAPIV3Schema"])
    return [e.message for e in validator.iter_errors(doc)]


def test_defaults_are_calicos_documented_defaults() -> None:
    s = load_settings(None, None)
    assert s.interval == timedelta(seconds=150)
    assert s.initial_lookback == timedelta(hours=24)
    assert s.stabilization_period == timedelta(minutes=10)
    assert (s.max_rules, s.policies_learning_cut_off) == (20, 20)
    assert s.tier_name == "namespace-isolation"
    assert s.intra_namespace_pass is False
    assert s.namespace_selector == DEFAULT_SELECTOR
    for prefix in ("tigera-", "calico-", "kube-", "openshift-"):
        assert f"projectcalico.org/name starts with '{prefix}'" in s.namespace_selector
    assert (s.tier_order, s.tier_default_action) == (10000.0, "Deny")
    assert (s.private_cidr_cap, s.public_cidr_cap) == (8, 16)
    assert (s.cluster_cidrs, s.cluster_domain) == ((), "cluster.local")
    assert s.stale_rule_period == timedelta(days=14)
    assert s.unknown_tiers == "learn"


def test_operator_scope_dump_is_read_unchanged(tmp_path: Path) -> None:
    path = _write(tmp_path, OPERATOR_SCOPE)
    assert _crd_errors(yaml.safe_load(OPERATOR_SCOPE)) == []
    s = load_settings(path, None)
    assert s.rec_status == "Disabled"  # recorded; flowfence runs regardless
    assert s.namespace_selector.startswith("!(kubernetes.io/metadata.name starts with 'tigera-')")
    assert s.interval == timedelta(seconds=150)  # unset fields keep the defaults
    assert s.scope_path == path


def test_full_scope_sets_every_field(tmp_path: Path) -> None:
    assert _crd_errors(yaml.safe_load(FULL_SCOPE)) == []
    s = load_settings(_write(tmp_path, FULL_SCOPE), None)
    assert s.interval == timedelta(seconds=150)
    assert s.initial_lookback == timedelta(minutes=90)
    assert s.stabilization_period == timedelta(minutes=20)
    assert (s.max_rules, s.policies_learning_cut_off) == (30, 5)
    assert s.namespace_selector == "projectcalico.org/name in {'shop', 'db'}"
    assert s.intra_namespace_pass is True
    assert s.tier_name == "recommendations"
    assert s.rec_status == "Enabled"


def test_kubectl_list_with_one_scope_is_accepted(tmp_path: Path) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(FULL_SCOPE)]}
    s = load_settings(_write(tmp_path, yaml.safe_dump(doc)), None)
    assert s.tier_name == "recommendations"


def _scope_with(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(FULL_SCOPE)
    for dotted, value in changes.items():
        target = doc
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"metadata__name": "other"},
            "metadata.name: Calico acts only on the scope named 'default'",
        ),
        ({"spec__interval": "10"}, "spec.interval: time: missing unit"),
        ({"spec__interval": "1d"}, "spec.interval: time: unknown unit 'd'"),
        ({"spec__interval": 150}, "spec.interval: expected a duration string"),
        ({"spec__interval": "20s"}, "spec.interval: must be at least 30s"),
        ({"spec__initialLookback": "-1h"}, "spec.initialLookback: must be positive"),
        ({"spec__maxRules": "20"}, "spec.maxRules: expected an integer"),
        ({"spec__maxRules": 0}, "spec.maxRules: must be at least 1"),
        ({"spec__namespaceSpec__selector": "name == 'x"}, "spec.namespaceSpec.selector: invalid"),
        ({"spec__namespaceSpec__tierName": "Tier_1"}, "spec.namespaceSpec.tierName: tier name"),
        *(
            (
                {"spec__namespaceSpec__tierName": tier},
                f"spec.namespaceSpec.tierName: {tier!r} is a tier Calico or its operator defines",
            )
            for tier in (
                "default",
                "kube-admin",
                "kube-baseline",
                "allow-tigera",
                "calico-system",
                "allow-cnx",
            )
        ),
        ({"spec__namespaceSpec__recStatus": "On"}, "spec.namespaceSpec.recStatus: expected one of"),
        (
            {"spec__namespaceSpec__intraNamespacePassThroughTraffic": "yes"},
            "expected true or false",
        ),
        ({"spec__namespaceSpec__sel": "all()"}, "spec.namespaceSpec: unknown key 'sel'"),
        ({"spec__lookback": "1h"}, "spec: unknown key 'lookback'"),
        ({"spec__hostEndpointSpec__tier": "x"}, "spec.hostEndpointSpec: unknown key 'tier'"),
        ({"metadata__nmae": "x"}, "metadata: unknown key 'nmae'"),
        ({"kind": "PolicyRecommendation"}, "expected apiVersion projectcalico.org/v3"),
        ({"spec__stabilizationPeriod": "1m"}, "stabilization_period: 1m0s is shorter than"),
    ],
)
def test_scope_errors_name_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = _write(tmp_path, yaml.safe_dump(_scope_with(**change)))
    with pytest.raises(ConfigError) as info:
        load_settings(path, None)
    assert message in str(info.value)


def test_namespace_spec_without_selector_is_refused_like_the_crd(tmp_path: Path) -> None:
    doc = _scope_with(spec__namespaceSpec={"recStatus": "Enabled"})
    assert _crd_errors(doc)  # the CRD requires it too
    with pytest.raises(ConfigError, match=r"namespaceSpec\.selector: required"):
        load_settings(_write(tmp_path, yaml.safe_dump(doc)), None)


def test_scope_without_spec_is_refused_like_the_crd(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "PolicyRecommendationScope",
    }
    doc["metadata"] = {"name": "default"}
    assert _crd_errors(doc)
    with pytest.raises(ConfigError, match="spec: required"):
        load_settings(_write(tmp_path, yaml.safe_dump(doc)), None)
    doc["spec"] = {}
    assert _crd_errors(doc) == []
    assert load_settings(_write(tmp_path, yaml.safe_dump(doc)), None) == Settings(
        scope_path=tmp_path / "f.yaml"
    )


def test_crd_and_loader_agree_on_type_errors(tmp_path: Path) -> None:
    for change in (
        {"spec__maxRules": "many"},
        {"spec__namespaceSpec__recStatus": "Maybe"},
        {"spec__interval": 5},
        {"spec__namespaceSpec__selector": "x" * 4097},
    ):
        doc = _scope_with(**change)
        assert _crd_errors(doc), change
        with pytest.raises(ConfigError):
            load_settings(_write(tmp_path, yaml.safe_dump(doc)), None)


def test_flowfence_config_sets_every_field(tmp_path: Path) -> None:
    s = load_settings(None, _write(tmp_path, FULL_CONFIG))
    assert (s.tier_order, s.tier_default_action, s.flavor) == (500.5, "Pass", "calico")
    assert (s.private_cidr_cap, s.public_cidr_cap) == (4, 32)
    assert s.cluster_cidrs == ("10.244.0.0/16", "10.96.0.0/12", "fd00:10:96::/112")
    assert s.cluster_domain == "cluster.example"
    assert s.stale_rule_period == timedelta(days=7)
    assert s.stale_namespace_period == timedelta(days=90)
    assert s.late_arrival_grace == timedelta(minutes=15)
    assert dict(s.tier_orders) == {"last": None, "platform": 20000.0, "security": 100.0}
    assert s.unknown_tiers == "exclude"
    assert (s.memory_limit, s.threads, s.temp_dir) == ("4GiB", 4, Path("/var/tmp/flowfence"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tierOrdr: 5", "unknown key 'tierOrdr'"),
        ("tierOrder: true", "tierOrder: expected a finite number"),
        ("tierOrder: .nan", "tierOrder: expected a finite number"),
        ("flavor: oss", "flavor: expected one of calico-enterprise, calico, kubernetes"),
        ("clusterCIDRs: [10.244.0.1/16]", "clusterCIDRs: invalid CIDR '10.244.0.1/16'"),
        ("clusterCIDRs: 10.0.0.0/8", "clusterCIDRs: expected a list"),
        ("clusterDomain: 'bad domain'", "clusterDomain: expected a DNS domain"),
        ("staleRulePeriod: 2w", "staleRulePeriod: time: unknown unit 'w'"),
        ("lateArrivalGrace: -1m", "lateArrivalGrace: must be at least 0s"),
        ("tierOrders: {Bad_Tier: 1}", "tierOrders.Bad_Tier: tier name"),
        ("tierOrders: {namespace-isolation: 1}", "tierOrders: lists the recommendation tier"),
        ("memoryLimit: lots", "memoryLimit: expected a size"),
        ("threads: 0", "threads: must be at least 1"),
        ("unknownTiers: drop", "unknownTiers: expected one of learn, exclude"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    text = f"apiVersion: flowfence.io/v1alpha1\nkind: FlowfenceConfig\n{line}\n"
    with pytest.raises(ConfigError) as info:
        load_settings(None, _write(tmp_path, text))
    assert message in str(info.value)


def test_config_header_duplicates_and_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected apiVersion flowfence\.io/v1alpha1"):
        load_settings(None, _write(tmp_path, "apiVersion: v1\nkind: ConfigMap\n"))
    dup = "apiVersion: flowfence.io/v1alpha1\nkind: FlowfenceConfig\nthreads: 2\nthreads: 3\n"
    with pytest.raises(ConfigError, match="duplicate key 'threads'"):
        load_settings(None, _write(tmp_path, dup))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(None, _write(tmp_path, "kind: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", None)
    with pytest.raises(ConfigError, match="expected one YAML document, found 2"):
        load_settings(_write(tmp_path, FULL_SCOPE + "---\n" + FULL_SCOPE), None)


def test_precedence_and_cli_overrides(tmp_path: Path) -> None:
    scope = _write(tmp_path, FULL_SCOPE, "scope.yaml")
    config = _write(tmp_path, FULL_CONFIG, "config.yaml")
    s = load_settings(scope, config, max_rules=7, interval="5m", threads=None, flavor="kubernetes")
    assert s.max_rules == 7  # CLI beats the scope
    assert s.interval == timedelta(minutes=5)
    assert s.threads == 4  # None means "not given on the command line"
    assert s.flavor == "kubernetes"
    assert s.tier_name == "recommendations"  # from the scope
    with pytest.raises(ConfigError, match="--max-rules: must be at least 1"):
        load_settings(None, None, max_rules=0)
    with pytest.raises(ConfigError, match="unknown setting 'max_rule'"):
        load_settings(None, None, max_rule=3)
    with pytest.raises(ConfigError, match="--namespace-selector: invalid selector"):
        load_settings(None, None, namespace_selector="has(")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.max_rules = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.tier_orders["x"] = 1.0  # type: ignore[index]


def test_documented_examples_load(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.DOTALL)
    kinds = set()
    for n, block in enumerate(blocks):
        doc = yaml.safe_load(block)
        path = _write(tmp_path, block, f"doc{n}.yaml")
        kinds.add(doc["kind"])
        if doc["kind"] == "PolicyRecommendationScope":
            assert _crd_errors(doc) == []
            load_settings(path, None)
        else:
            load_settings(None, path)
    assert kinds == {"PolicyRecommendationScope", "FlowfenceConfig"}


def test_run_refuses_calicos_default_tier_as_the_recommendation_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tierName: default` would make tier.yaml redefine Calico's default tier: exit 2, one
    line naming the field, nothing written."""
    scope = _write(tmp_path, yaml.safe_dump(_scope_with(spec__namespaceSpec__tierName="default")))
    out = tmp_path / "out"
    flows = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "demo"
    code = main(["run", "--flows", str(flows), "--out", str(out), "--config", str(scope)])
    err = capsys.readouterr().err
    assert code == 2
    assert "spec.namespaceSpec.tierName: 'default' is a tier Calico or its operator" in err
    assert not (out / "policies").exists()
