from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from flowfence.config.settings import Settings
from flowfence.core.errors import ConfigError
from flowfence.flows.edges import EDGE_SCHEMA
from flowfence.learn.namespaces import (
    DELETED,
    INVALID_NAME,
    NOT_SELECTED,
    discover_namespaces,
    load_namespaces,
    namespace_labels,
    select_namespaces,
)

KUBECTL_LIST = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2026-09-01T10:00:00Z"
    labels:
      kubernetes.io/metadata.name: shop
      env: prod
      team: payments
    name: shop
    resourceVersion: "201"
    uid: 0b6f3c1a-1111-4d2e-9c7a-5e5e5e5e5e01
  spec:
    finalizers: [kubernetes]
  status:
    phase: Active
- apiVersion: v1
  kind: Namespace
  metadata:
    labels:
      kubernetes.io/metadata.name: kube-system
    name: kube-system
- apiVersion: v1
  kind: Namespace
  metadata:
    labels:
      env: dev
      "bad key!": x
      quote: "it's"
    name: staging
- apiVersion: v1
  kind: Namespace
  metadata:
    name: Bad_Name
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: not-a-namespace
kind: List
metadata:
  resourceVersion: ""
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "namespaces.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_kubectl_list_is_loaded_and_bad_entries_reported(tmp_path: Path) -> None:
    nsfile = load_namespaces(_write(tmp_path, KUBECTL_LIST))
    assert list(nsfile.labels) == ["kube-system", "shop", "staging"]
    assert dict(nsfile.labels["shop"]) == {
        "env": "prod",
        "kubernetes.io/metadata.name": "shop",
        "team": "payments",
    }
    assert dict(nsfile.labels["staging"]) == {"env": "dev"}  # only the bad labels are dropped
    problems = "\n".join(nsfile.problems)
    assert "'bad key!'='x'" in problems
    assert '"it\'s"' in problems
    assert f"{INVALID_NAME} 'Bad_Name'" in problems
    assert "item 4: not a Namespace" in problems


def test_single_namespace_and_multi_document(tmp_path: Path) -> None:
    single = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {x: '1'}\n"
    assert dict(load_namespaces(_write(tmp_path, single)).labels["a"]) == {"x": "1"}
    multi = single + "---\n" + single.replace("name: a", "name: b") + "---\n"
    nsfile = load_namespaces(_write(tmp_path, multi))
    assert list(nsfile.labels) == ["a", "b"] and nsfile.problems == ()
    twice = single + "---\n" + single
    assert "listed twice" in load_namespaces(_write(tmp_path, twice)).problems[0]


def test_unreadable_or_non_yaml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_namespaces(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_namespaces(_write(tmp_path, "items: [\n"))
    with pytest.raises(ConfigError, match="expected a Namespace or a List"):
        load_namespaces(_write(tmp_path, "- just\n- a list\n"))


def test_name_labels_always_win() -> None:
    labels = namespace_labels("shop", {"shop": {"projectcalico.org/name": "other", "env": "x"}})
    assert labels == {
        "projectcalico.org/name": "shop",
        "kubernetes.io/metadata.name": "shop",
        "env": "x",
    }


def test_default_selector_excludes_platform_namespaces() -> None:
    discovered = ["shop", "kube-system", "calico-system", "tigera-manager", "openshift-dns", "db"]
    result = select_namespaces(discovered, None, Settings())
    assert result.selected == ("db", "shop")
    assert dict(result.excluded) == {
        "calico-system": NOT_SELECTED,
        "kube-system": NOT_SELECTED,
        "openshift-dns": NOT_SELECTED,
        "tigera-manager": NOT_SELECTED,
    }
    assert result.not_in_file == ()


def test_operator_selector_on_metadata_name_works_too() -> None:
    selector = "!(kubernetes.io/metadata.name starts with 'kube-')"
    result = select_namespaces(["kube-public", "shop"], None, Settings(namespace_selector=selector))
    assert result.selected == ("shop",)


def test_label_selector_needs_the_namespaces_file(tmp_path: Path) -> None:
    nsfile = load_namespaces(_write(tmp_path, KUBECTL_LIST))
    settings = Settings(namespace_selector="env in {'prod', 'dev'}")
    result = select_namespaces(["shop", "gone"], nsfile.labels, settings)
    assert result.selected == ("shop", "staging")  # staging comes from the file alone
    # Absent from the file: deleted from the cluster, whatever the selector says.
    assert dict(result.excluded) == {"gone": DELETED, "kube-system": NOT_SELECTED}
    assert result.not_in_file == ("gone",) and result.deleted == ("gone",)
    assert select_namespaces(["shop"], None, settings).selected == ()


def test_deleted_namespaces_with_and_without_the_file(tmp_path: Path) -> None:
    labels = load_namespaces(_write(tmp_path, KUBECTL_LIST)).labels
    settings = Settings(namespace_selector="all()")
    # With the file: a known namespace absent from it is deleted even without flows, and a
    # namespace recorded as gone is back as soon as the file lists it.
    found = select_namespaces(["shop"], labels, settings, known=["old"], gone={"shop"})
    assert found.deleted == ("old",) and "shop" in found.selected
    # Without the file only the namespaces recorded as gone are deleted; known ones without
    # flows are not brought in.
    bare = select_namespaces(["shop", "back"], None, settings, known=["old"], gone={"shop"})
    assert (bare.selected, bare.deleted) == (("back",), ("shop",))


def test_invalid_discovered_names_are_excluded_escaped() -> None:
    result = select_namespaces(["ok", "x' || all() || '"], None, Settings())
    assert result.selected == ("ok",)
    assert result.excluded == (("\"x' || all() || '\"", INVALID_NAME),)


def test_discover_namespaces_from_workload_endpoints() -> None:
    rows = [
        {
            "source_type": "wep",
            "source_namespace": "shop",
            "dest_type": "net",
            "dest_namespace": None,
        },
        {
            "source_type": "hep",
            "source_namespace": "hostns",
            "dest_type": "wep",
            "dest_namespace": "db",
        },
        {
            "source_type": "ns",
            "source_namespace": "sets",
            "dest_type": "wep",
            "dest_namespace": "shop",
        },
    ]
    frame = pl.DataFrame(rows).cast({k: EDGE_SCHEMA[k] for k in rows[0]})
    assert discover_namespaces(frame) == ["db", "shop"]
