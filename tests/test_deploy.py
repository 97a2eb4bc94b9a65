"""The deployment: the kustomize tree renders, every object validates against the Kubernetes
schemas and the scope against its Calico CRD, the pod is locked down, its settings are derived
from its resources, and the command it runs works (the image itself: test_image.py).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer.main
import yaml
from conftest import FLOW_NOW
from tools import need

from flowfence.calico.schema import CALICO, schema
from flowfence.cli import app as cli
from flowfence.config.settings import Settings, load_settings
from flowfence.run import reads as run_reads

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.32.0"  # the oldest Kubernetes the manifests promise to work on
TREES = ("base", "overlays/s3", "overlays/watch", "overlays/watch-s3")
UID = 10001
# The volume types the `restricted` Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
# Kubernetes accepts only these divisors in a resourceFieldRef.
DIVISORS = {
    "cpu": {"1", "1m"},
    "memory": {"1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"},
}
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 1e-3}
_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def render(tree: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize` renders for `tree` (a fresh copy: tests may edit it)."""
    return copy.deepcopy(_render(tree))


@functools.cache
def _render(tree: str) -> tuple[dict[str, Any], ...]:
    return _kustomize(DEPLOY / tree)


def _kustomize(directory: Path) -> tuple[dict[str, Any], ...]:
    kubectl = need("kubectl", "kubectl kustomize renders the deployment tree")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def workload(docs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one workload and its pod template."""
    found = [d for d in docs if d["kind"] in ("CronJob", "Deployment", "Job", "Pod")]
    assert len(found) == 1, [d["kind"] for d in found]
    obj = found[0]
    pod = obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else None
    return obj, pod or obj["spec"]["template"]


def quantity(text: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert match, text
    return float(match[1]) * _UNITS[match[2]]


def config_map(docs: tuple[dict[str, Any], ...], prefix: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"][:-11] == prefix]
    assert len(found) == 1, f"no generated ConfigMap {prefix}"
    return found[0]


def container_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, str]:
    """The environment as the kubelet builds it: envFrom, then env, with the Downward API
    resolved from the container's resources and $(VAR) references expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", ()):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            env.update(one(docs, "ConfigMap", name)["data"])
    resources = container["resources"]
    for item in container.get("env", ()):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], item["value"])
            continue
        ref = item["valueFrom"]["resourceFieldRef"]
        assert ref["containerName"] == container["name"]
        which, resource = ref["resource"].split(".")
        assert str(ref["divisor"]) in DIVISORS[resource], ref
        amount = quantity(resources[which][resource]) / quantity(ref["divisor"])
        env[item["name"]] = str(math.ceil(amount))
    return env


# ---- the tree renders and validates ---------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_every_object_validates_against_the_kubernetes_schema(tree: str) -> None:
    docs = render(tree)
    kinds = {"Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy"}
    assert {d["kind"] for d in docs} >= kinds
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{tree}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "flowfence"


def test_the_validator_is_strict_and_pinned() -> None:
    # The check above means something only if a misspelt field fails it.
    cronjob = dict(one(render("base"), "CronJob"))
    cronjob["spec"] = {**cronjob["spec"], "concurrencyPolicyy": "Forbid"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, K8S_VERSION, strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_every_reference_resolves(tree: str) -> None:
    docs = render(tree)
    _, pod = workload(docs)
    spec = pod["spec"]
    one(docs, "ServiceAccount", spec["serviceAccountName"])
    for volume in spec["volumes"]:
        if "configMap" in volume:
            one(docs, "ConfigMap", volume["configMap"]["name"])
        if "persistentVolumeClaim" in volume:
            one(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    for source in spec["containers"][0].get("envFrom", ()):
        if "configMapRef" in source:
            one(docs, "ConfigMap", source["configMapRef"]["name"])
        else:  # credentials are the user's to create, or come from workload identity
            assert source["secretRef"]["optional"] is True
    mounted = {m["name"] for c in spec["containers"] for m in c["volumeMounts"]}
    assert mounted == {v["name"] for v in spec["volumes"]}
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


# ---- configuration ---------------------------------------------------------------------------


def test_configmap_holds_a_scope_and_settings_that_flowfence_loads(tmp_path: Path) -> None:
    data = config_map(render("base"), "flowfence-config")["data"]
    assert set(data) == {"scope.yaml", "flowfence.yaml"}
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    settings = load_settings(tmp_path / "scope.yaml", tmp_path / "flowfence.yaml")
    assert settings.tier_name == "namespace-isolation"
    assert settings.flavor == "calico-enterprise"
    # Memory, threads and spill directory come from the pod, not the file.
    assert (settings.memory_limit, settings.threads, settings.temp_dir) == (None, None, None)
    # The scope's interval is the CronJob's period, so lifecycle timing matches the schedule.
    cronjob = one(render("base"), "CronJob")
    assert schedule_period(cronjob["spec"]["schedule"]) == settings.interval.total_seconds()
    assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] < (
        settings.interval.total_seconds()
    )


def schedule_period(schedule: str) -> int:
    """Seconds between runs for the simple schedules we ship ("M * * * *", "*/N * * * *",
    "M */N * * *", "M H * * *"); anything else fails the test rather than guessing."""
    minute, hour, *rest = schedule.split()
    assert rest == ["*", "*", "*"], schedule
    if minute.isdigit() and hour == "*":
        return 3600
    if minute.startswith("*/") and hour == "*":
        return 60 * int(minute[2:])
    if minute.isdigit() and hour.startswith("*/"):
        return 3600 * int(hour[2:])
    if minute.isdigit() and hour.isdigit():
        return 86400
    raise AssertionError(f"unsupported schedule {schedule!r}")


def test_scope_validates_against_the_calico_crd() -> None:
    scope = yaml.safe_load(config_map(render("base"), "flowfence-config")["data"]["scope.yaml"])
    crd = schema("calico-enterprise", CALICO, "PolicyRecommendationScope")
    assert crd is not None
    crd.validator.validate(scope)
    assert scope["metadata"]["name"] == "default"
    bad = {**scope, "spec": {**scope["spec"], "intervall": "1h"}}
    with pytest.raises(jsonschema.ValidationError):
        crd.validator.validate(bad)


# ---- the workload --------------------------------------------------------------------------


@pytest.mark.parametrize("tree", ["base", "overlays/s3"])
def test_cronjob_never_overlaps_and_cleans_up(tree: str) -> None:
    cronjob, pod = workload(render(tree))
    assert cronjob["kind"] == "CronJob"
    spec, job = cronjob["spec"], cronjob["spec"]["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < schedule_period(spec["schedule"])
    assert 0 <= job["backoffLimit"] <= 6
    assert 0 < job["activeDeadlineSeconds"] < schedule_period(spec["schedule"])
    assert job["ttlSecondsAfterFinished"] > 0
    assert pod["spec"]["restartPolicy"] == "Never"
    # Bad input or configuration (exit code 2) fails the Job at once instead of retrying.
    rule = job["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2]


@pytest.mark.parametrize("tree", ["overlays/watch", "overlays/watch-s3"])
def test_watch_overlay_replaces_the_cronjob_with_one_deployment(tree: str) -> None:
    deployment, pod = workload(render(tree))
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # one writer on the volume
    args = pod["spec"]["containers"][0]["args"]
    assert args[0] == "run" and args.count("--watch") == 1
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 60  # time to finish a run


def test_deployment_runs_the_same_pod_as_the_cronjob() -> None:
    _, cron_pod = workload(render("base"))
    _, watch_pod = workload(render("overlays/watch"))
    cron, watch = cron_pod["spec"], dict(watch_pod["spec"])
    assert watch.pop("terminationGracePeriodSeconds") > 0
    assert (cron.pop("restartPolicy"), watch.pop("restartPolicy")) == ("Never", "Always")
    cron_c, watch_c = dict(cron.pop("containers")[0]), dict(watch.pop("containers")[0])
    assert watch_c.pop("args") == [*cron_c.pop("args"), "--watch"]
    assert (watch, watch_c) == (cron, cron_c)
    assert watch_pod["metadata"]["labels"] == cron_pod["metadata"]["labels"]


@pytest.mark.parametrize("tree", TREES)
def test_pod_meets_the_restricted_pod_security_standard(tree: str) -> None:
    docs = render(tree)
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    _, pod = workload(docs)
    spec = pod["spec"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == UID
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume
    for container in spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert not ctx.get("privileged")
        assert not container.get("ports")


@pytest.mark.parametrize("tree", TREES)
def test_no_cluster_permissions_and_no_token(tree: str) -> None:
    docs = render(tree)
    rbac = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert not [d for d in docs if d["kind"] in rbac]
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    _, pod = workload(docs)
    assert pod["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("tree", TREES)
def test_duckdb_limits_are_derived_from_the_resources(tree: str) -> None:
    docs = render(tree)
    _, pod = workload(docs)
    container = pod["spec"]["containers"][0]
    env = container_env(docs, container)
    resources = container["resources"]
    memory = quantity(env["FLOWFENCE_MEMORY_LIMIT"].removesuffix("B"))
    limit = quantity(resources["limits"]["memory"])
    # Headroom above DuckDB's own limit for Python, Arrow and allocations DuckDB does not count.
    assert 0.5 * limit <= memory <= 0.8 * limit, (memory, limit)
    assert env["FLOWFENCE_MEMORY_LIMIT"] == "1536MiB"
    assert int(env["FLOWFENCE_THREADS"]) == math.ceil(quantity(resources["limits"]["cpu"]))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    spill = next(
        v for v in pod["spec"]["volumes"] if v["name"] == mounts[env["FLOWFENCE_TEMP_DIR"]]
    )
    empty_dirs = [v["emptyDir"] for v in pod["spec"]["volumes"] if "emptyDir" in v]
    assert "sizeLimit" in spill["emptyDir"]
    ephemeral = quantity(resources["limits"]["ephemeral-storage"])
    assert sum(quantity(e["sizeLimit"]) for e in empty_dirs) < ephemeral


# ---- the command the pod runs --------------------------------------------------------------


def test_the_deployed_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run exactly the base CronJob's arguments and environment, with the pod's mounts mapped
    into tmp_path (the flows volume onto the bundled demo data)."""
    docs = render("base")
    _, pod = workload(docs)
    container = pod["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mapping: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        local = tmp_path / mount["name"]
        local.mkdir()
        source = volumes[mount["name"]]
        if "configMap" in source:
            for key, text in one(docs, "ConfigMap", source["configMap"]["name"])["data"].items():
                (local / key).write_text(text, encoding="utf-8")
        if "persistentVolumeClaim" in source:
            shutil.copytree(REPO / "fixtures" / "data" / "demo", local / "flows")
        mapping[mount["mountPath"]] = local

    def local(value: str) -> str:
        for mount, path in mapping.items():
            if value == mount or value.startswith(mount + "/"):
                return str(path) + value[len(mount) :]
        return value

    for key, value in container_env(docs, container).items():
        monkeypatch.setenv(key, local(value))
    seen: list[Settings] = []
    real_connect = run_reads.connect

    def connect(settings: Settings) -> Any:
        seen.append(settings)
        return real_connect(settings)

    monkeypatch.setattr(run_reads, "connect", connect)
    args = [local(a) for a in container["args"]]
    assert cli.main([*args, "--now", FLOW_NOW, "--output", "json"]) == 0
    out = Path(local("/data/out"))
    assert (out / "report.json").is_file()
    assert len(list((out / "policies").glob("*.yaml"))) > 3
    assert seen and seen[0].memory_limit == "1536MiB"
    assert seen[0].threads == 2
    assert seen[0].temp_dir == mapping["/var/tmp/flowfence"]


def test_s3_overlay_reads_flows_and_keeps_state_in_object_storage() -> None:
    docs = render("overlays/s3")
    _, pod = workload(docs)
    container = pod["spec"]["containers"][0]
    env = container_env(docs, container)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in container["args"]]
    flows, state = args[args.index("--flows") + 1], args[args.index("--state") + 1]
    assert flows.startswith("s3://") and state.startswith("s3://") and flows != state
    assert args[args.index("--out") + 1] == "/data/out"
    assert "AWS_REGION" in env
    assert not [k for k in env if k.startswith("AWS_SECRET")]  # credentials only in a Secret
    base_pvc = one(render("base"), "PersistentVolumeClaim")["spec"]["resources"]["requests"]
    pvc = one(docs, "PersistentVolumeClaim")["spec"]["resources"]["requests"]
    assert quantity(pvc["storage"]) < quantity(base_pvc["storage"])
    # The base pod has no network at all; the s3 one may reach DNS and HTTPS only.
    assert "egress" not in one(render("base"), "NetworkPolicy")["spec"]
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    ports = {(p["protocol"], p["port"]) for rule in egress for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443)}


def test_image_tag_is_the_project_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for tree in TREES:
        container = workload(render(tree))[1]["spec"]["containers"][0]
        assert container["image"] == f"flowfence:{version}"


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("tree", TREES)
def test_nothing_is_left_unresolved(tree: str) -> None:
    # A failed strategic-merge or a stray kustomize directive would leave these behind.
    for doc in render(tree):
        for node in _walk(doc):
            if isinstance(node, dict):
                assert not any(str(k).startswith("$") for k in node), node


# ---- the documentation and the CLI agree with the tree --------------------------------------


def test_every_option_the_tree_passes_exists() -> None:
    run = typer.main.get_command(cli.app).commands["run"]
    known = {opt for param in run.params for opt in param.opts}
    for tree in TREES:
        args = workload(render(tree))[1]["spec"]["containers"][0]["args"]
        assert args[0] == "run"
        used = {a for a in args if a.startswith("--")}
        assert used <= known, (tree, used - known)


def test_the_documented_overlay_renders(tmp_path: Path) -> None:
    """The deployment guide's overlay (step 2), as a user would write it."""
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# my-flowfence/kustomization\.yaml\n.*?)```", text, re.S)
    assert block, "docs/deployment.md lost the my-flowfence overlay"
    overlay = tmp_path / "my-flowfence"
    overlay.mkdir()
    kustomization = yaml.safe_load(block[1])
    relative = Path("..") / os.path.relpath(DEPLOY, tmp_path)
    kustomization["resources"] = [
        str(relative / Path(r).relative_to("../deploy")) for r in kustomization["resources"]
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    for name in ("scope.yaml", "flowfence.yaml"):
        shutil.copy(DEPLOY / "base" / "config" / name, overlay / name)
    with (overlay / "flowfence.yaml").open("a", encoding="utf-8") as f:
        f.write("publicCidrCap: 4\n")  # a user's edit must reach the pod
    docs = _kustomize(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    _, pod = workload(docs)
    assert pod["spec"]["containers"][0]["image"] == "registry.example.com/platform/flowfence:0.1.0"
    mounted = next(v for v in pod["spec"]["volumes"] if v["name"] == "config")
    data = one(docs, "ConfigMap", mounted["configMap"]["name"])["data"]
    assert data["flowfence.yaml"].endswith("publicCidrCap: 4\n")
