"""Reads policy manifests (YAML files or documents) into the model of `policies.py`.

`load_policies` reads a file or folder (plus documents), `policy_set` builds the model from
in-memory documents (the engine's own output), `load_namespaces` reads namespace labels.

Each document is dispatched on `apiVersion` and `kind`. Unknown kinds and unknown fields are
collected as warnings that name the file, the object and the field path; malformed YAML and
invalid values raise PolicyError naming the file. Every selector is compiled here, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from flowfence.calico.policies import (
    STAGED_ACTIONS,
    Direction,
    NetworkSet,
    Policy,
    PolicyKind,
    PolicySet,
    StagedAction,
    Tier,
    build,
)
from flowfence.calico.policy_k8s import K8S_POLICY_ORDER, convert
from flowfence.calico.policy_rules import Context, Rule, parse_nets, parse_rule
from flowfence.calico.selector import parse
from flowfence.core import yaml_loader
from flowfence.core.errors import PolicyError

CALICO_APIS = ("projectcalico.org/v3", "crd.projectcalico.org/v1")
K8S_NETWORKING = "networking.k8s.io/v1"
SUFFIXES = (".yaml", ".yml", ".json")

_CALICO_KINDS = {
    "NetworkPolicy": PolicyKind.NP,
    "GlobalNetworkPolicy": PolicyKind.GNP,
    "StagedNetworkPolicy": PolicyKind.SNP,
    "StagedGlobalNetworkPolicy": PolicyKind.SGNP,
    "StagedKubernetesNetworkPolicy": PolicyKind.SKNP,
}
_POLICY_FIELDS = frozenset(
    {
        "tier",
        "order",
        "selector",
        "serviceAccountSelector",
        "types",
        "ingress",
        "egress",
        "performanceHints",
    }
)
_GLOBAL_FIELDS = frozenset({"namespaceSelector", "doNotTrack", "preDNAT", "applyOnForward"})
_TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
# Calico resource names (DNS-1123 subdomain) and namespace names (DNS-1123 label).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# libyaml's loader when PyYAML was built with it: same documents, about ten times faster.


class Loader:
    """Accumulates documents; `build()` returns the PolicySet."""

    def __init__(self, *, namespaces_only: bool = False) -> None:
        self.namespaces_only = namespaces_only
        self.tiers: list[Tier] = []
        self.policies: list[Policy] = []
        self.network_sets: list[NetworkSet] = []
        self.namespaces: dict[str, dict[str, str]] = {}
        self.warnings: list[str] = []
        self._seen: dict[tuple[str, ...], str] = {}

    def add_path(self, path: Path) -> None:
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            files = [p for p in candidates if p.is_file()]
            # A link is followed for reading; one that leads nowhere (missing target or a loop)
            # is named, as a policy the operator meant to load may be missing.
            for p in candidates:
                if p.is_symlink() and not p.exists():
                    self.warnings.append(f"{p}: a broken symlink (missing target or loop); skipped")
            if not files:
                self.warnings.append(f"{path}: no YAML manifests found")
        elif path.is_file():
            files = [path]
        else:
            raise PolicyError(f"{path}: no such file or directory")
        for file in files:
            self.add_file(file)

    def add_file(self, file: Path) -> None:
        try:
            text = file.read_text(encoding="utf-8")
            docs = yaml_loader.load_all(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{file}: cannot read: {exc}") from exc
        except yaml_loader.Refused as exc:
            raise PolicyError(f"{file}: refused: a YAML document {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or exc
            raise PolicyError(f"{file}: malformed YAML{at}: {problem}") from exc
        for doc in docs:
            self.add(doc, str(file))

    def add(self, doc: Any, file: str) -> None:
        if doc is None:
            return
        if not isinstance(doc, Mapping):
            raise PolicyError(f"{file}: a document must be a mapping, got {type(doc).__name__}")
        kind, api = doc.get("kind"), doc.get("apiVersion")
        if not isinstance(kind, str) or not isinstance(api, str):
            raise PolicyError(f"{file}: a document needs string apiVersion and kind")
        if kind == "List" or (kind.endswith("List") and "items" in doc):
            ctx = Context(f"{file}: {kind}", self.warnings)
            ctx.check_fields(doc, ("apiVersion", "kind", "items", "metadata"), "")
            for item in ctx.sequence(doc.get("items"), "items"):
                self.add(item, file)
            return
        if kind == "Kustomization" and api.startswith("kustomize.config.k8s.io/"):
            return  # the index of a policy folder (flowfence writes one), not a policy
        meta = Context(f"{file}: {kind}", self.warnings).mapping(doc.get("metadata"), "metadata")
        name = meta.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PolicyError(f"{file}: {kind}: bad or missing metadata.name {name!r}")
        ctx = Context(f"{file}: {kind} {name}", self.warnings)
        ctx.check_fields(doc, _TOP_FIELDS, "")
        if self.namespaces_only:
            if kind == "Namespace":
                self._namespace(ctx, name, meta)
            return
        spec = ctx.mapping(doc.get("spec"), "spec")
        if kind == "Namespace" and api == "v1":
            self._namespace(ctx, name, meta)
        elif kind == "NetworkPolicy" and api == K8S_NETWORKING:
            self._policy(ctx, PolicyKind.KNP, name, meta, spec)
        elif api not in CALICO_APIS:
            ctx.warn(f"unknown kind {kind} (apiVersion {api}); skipped")
        elif kind in _CALICO_KINDS:
            self._policy(ctx, _CALICO_KINDS[kind], name, meta, spec)
        elif kind == "Tier":
            self._tier(ctx, name, spec)
        elif kind in ("NetworkSet", "GlobalNetworkSet"):
            self._network_set(ctx, kind == "NetworkSet", name, meta, spec)
        else:
            ctx.warn(f"unknown kind {kind} (apiVersion {api}); skipped")

    def build(self) -> PolicySet:
        return build(self.tiers, self.policies, self.network_sets, self.namespaces, self.warnings)

    def _claim(self, ctx: Context, *key: str) -> None:
        if key in self._seen:
            raise ctx.error(f"duplicate object, also defined in {self._seen[key]}")
        self._seen[key] = ctx.where

    def _namespace_of(self, ctx: Context, meta: Mapping[str, Any]) -> str:
        namespace = meta.get("namespace")
        if namespace is None:
            ctx.warn("metadata.namespace missing; assumed 'default'")
            return "default"
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ctx.error(f"bad metadata.namespace {namespace!r}")
        return namespace

    def _namespace(self, ctx: Context, name: str, meta: Mapping[str, Any]) -> None:
        self._claim(ctx, "Namespace", name)
        self.namespaces[name] = labels(ctx, meta)

    def _tier(self, ctx: Context, name: str, spec: Mapping[str, Any]) -> None:
        ctx.check_fields(spec, ("order", "defaultAction"), "spec")
        self._claim(ctx, "Tier", name)
        action = spec.get("defaultAction", "Deny")
        if action not in ("Deny", "Pass"):
            raise ctx.error(f"spec.defaultAction must be Deny or Pass, got {action!r}")
        required = {"default": "Deny", "kube-admin": "Pass", "kube-baseline": "Pass"}.get(name)
        if required is not None and action != required:
            raise ctx.error(f"the {name!r} tier must have defaultAction {required}")
        self.tiers.append(Tier(name, order(ctx, spec.get("order")), action))

    def _network_set(
        self, ctx: Context, namespaced: bool, name: str, meta: Mapping[str, Any], spec: Any
    ) -> None:
        ctx.check_fields(spec, ("nets", "allowedEgressDomains"), "spec")
        if spec.get("allowedEgressDomains") is not None:
            ctx.warn("spec.allowedEgressDomains is not modelled (Calico Enterprise)")
        namespace = self._namespace_of(ctx, meta) if namespaced else None
        self._claim(ctx, "NetworkSet", namespace or "", name)
        self.network_sets.append(
            NetworkSet(
                name,
                namespace,
                tuple(sorted(labels(ctx, meta).items())),
                parse_nets(ctx, spec.get("nets"), "spec.nets"),
                ctx.where,
            )
        )

    def _policy(
        self,
        ctx: Context,
        kind: PolicyKind,
        name: str,
        meta: Mapping[str, Any],
        spec: Mapping[str, Any],
    ) -> None:
        namespace = self._namespace_of(ctx, meta) if kind.namespaced else None
        self._claim(ctx, kind.value, namespace or "", name)
        staged_action: StagedAction | None = None
        if kind.staged:
            raw = spec.get("stagedAction", "Set")
            if raw not in STAGED_ACTIONS:
                raise ctx.error(f"spec.stagedAction must be one of {STAGED_ACTIONS}, got {raw!r}")
            staged_action = raw
        if kind in (PolicyKind.KNP, PolicyKind.SKNP):
            assert namespace is not None
            k8s = convert(ctx, spec, namespace=namespace)
            self.policies.append(
                Policy(
                    kind=kind,
                    name=name,
                    namespace=namespace,
                    tier="default",
                    order=K8S_POLICY_ORDER,
                    selector=k8s.selector,
                    types=k8s.types,
                    ingress=k8s.ingress,
                    egress=k8s.egress,
                    staged_action=staged_action,
                    origin=ctx.where,
                )
            )
            return
        known = _POLICY_FIELDS | (_GLOBAL_FIELDS if not kind.namespaced else frozenset())
        ctx.check_fields(spec, known | ({"stagedAction"} if kind.staged else set()), "spec")
        for flag in ("doNotTrack", "preDNAT", "applyOnForward"):
            if spec.get(flag):
                ctx.warn(f"spec.{flag} is not modelled; evaluated as an ordinary policy")
        ingress = _rules(ctx, spec, "ingress", namespace)
        egress = _rules(ctx, spec, "egress", namespace)
        if staged_action == "Delete" and (ingress or egress):
            ctx.warn("a staged Delete should have an empty spec; its rules are ignored")
        tier = spec.get("tier") or "default"
        if not isinstance(tier, str) or not _NAME.fullmatch(tier):
            raise ctx.error(f"bad spec.tier {tier!r}")
        self.policies.append(
            Policy(
                kind=kind,
                name=name,
                namespace=namespace,
                tier=tier,
                order=order(ctx, spec.get("order")),
                selector=ctx.selector(spec.get("selector"), "spec.selector") or parse("all()"),
                types=types(ctx, spec.get("types"), bool(ingress), bool(egress)),
                ingress=ingress,
                egress=egress,
                namespace_selector=ctx.selector(
                    spec.get("namespaceSelector"), "spec.namespaceSelector"
                ),
                service_account_selector=ctx.selector(
                    spec.get("serviceAccountSelector"), "spec.serviceAccountSelector"
                ),
                staged_action=staged_action,
                origin=ctx.where,
            )
        )


def _rules(
    ctx: Context, spec: Mapping[str, Any], direction: Direction, namespace: str | None
) -> tuple[Rule, ...]:
    items = ctx.sequence(spec.get(direction), f"spec.{direction}")
    return tuple(
        parse_rule(
            ctx,
            item,
            f"spec.{direction}[{i}]",
            i,
            namespace=namespace,
            egress=direction == "egress",
        )
        for i, item in enumerate(items)
    )


def order(ctx: Context, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(f"spec.order must be a number, got {value!r}")
    return float(value)


def types(ctx: Context, value: Any, has_ingress: bool, has_egress: bool) -> frozenset[Direction]:
    """Explicit `types`, or as Calico derives them: egress only -> Egress, both -> both,
    ingress only or no rules -> Ingress."""
    if value is None:
        if has_egress and not has_ingress:
            return frozenset({"egress"})
        return frozenset({"ingress", "egress"}) if has_egress else frozenset({"ingress"})
    found: set[Direction] = set()
    for item in ctx.sequence(value, "spec.types"):
        if item == "Ingress":
            found.add("ingress")
        elif item == "Egress":
            found.add("egress")
        else:
            raise ctx.error(f"spec.types: expected Ingress or Egress, got {item!r}")
    return frozenset(found)


def labels(ctx: Context, meta: Mapping[str, Any]) -> dict[str, str]:
    raw = ctx.mapping(meta.get("labels"), "metadata.labels")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ctx.error(f"metadata.labels: {key!r}: {value!r} must be strings")
        out[key] = value
    return out


def load_policies(path: Path | None, *, extra_docs: Iterable[Mapping[str, Any]] = ()) -> PolicySet:
    """Load every manifest under `path` (a file or folder; None for none) plus `extra_docs`."""
    loader = Loader()
    if path is not None:
        loader.add_path(path)
    for i, doc in enumerate(extra_docs):
        loader.add(doc, f"<manifest {i}>")
    return loader.build()


def policy_set(docs: Iterable[Mapping[str, Any]]) -> PolicySet:
    """A PolicySet from in-memory manifest documents (e.g. the engine's own policies)."""
    return load_policies(None, extra_docs=docs)


def load_namespaces(path: Path) -> dict[str, dict[str, str]]:
    """Namespace labels from `kubectl get namespaces -o yaml` output (a List of Namespace)."""
    loader = Loader(namespaces_only=True)
    loader.add_path(path)
    return {name: dict(labels) for name, labels in loader.namespaces.items()}
