"""A run builds each policy document once and turns it into YAML at most once; the review works
on those documents and parses only the files that were on disk before the run (what the
reviewers saw), while the schema check reads back, once, exactly the files the run is about to
write (not those already on disk with the same bytes); and the lifecycle digests taken from the
documents (their statuses masked) are the digests earlier versions stored, so existing states
keep their statuses.

The real builders, PyYAML's dump and PyYAML's loaders are wrapped (not replaced) while the
golden runs and the review scenario of tests/golden_reports/ run through the command line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import review_scenario
import yaml
from regenerate_golden import FLAVORS, run_flavor

from flowfence.calico import schema_tree
from flowfence.cli.app import main
from flowfence.core import yaml_loader
from flowfence.render import kubernetes, manifests, yaml_text
from flowfence.review import apply_decisions

# sha256 of the sorted (namespace, digest) pairs in the state after each run, as stored before
# the digest was taken from the run's own documents (it was taken from a second rendering);
# updated when policies began to isolate both directions by default (policyTypes: Both).
GOLDEN_DIGESTS = {
    "calico-enterprise": "1a3e8a288a261618a11e15f8265b2bf8fa28cbe61abc2ffa603b275fe5db8ca6",
    "calico": "c95266f9376b9d570417d9c0815be97e6a678ec1dac82fa5488c8173baab422b",
    "kubernetes": "88cf86dfe8a8d00f544a97c8bd0c9b00c40ce4a0354b8d60bbd4a8dce251488b",
}
SCENARIO_DIGESTS = {
    "01-first-run": "f4f0938ecf29aab87a42fe3504b160db92acb591d5446a1890dff0ae2156ae62",
    "02-no-change": "f4f0938ecf29aab87a42fe3504b160db92acb591d5446a1890dff0ae2156ae62",
    "03-one-namespace-changed": "61c72ed0d44b1bec93a1e9a316424330cf0895d8703d9b938ca9fae72a57f378",
    "04-dismissed": "61c72ed0d44b1bec93a1e9a316424330cf0895d8703d9b938ca9fae72a57f378",
    "05-accepted-drift": "4d542be4551d2d3cc2d2f4d0bc9ad55f2bdf11a5294517c02acf847e1cd9c3aa",
    "06-stale-rule": "4d542be4551d2d3cc2d2f4d0bc9ad55f2bdf11a5294517c02acf847e1cd9c3aa",
}
LOADERS = ("load", "safe_load", "load_all", "safe_load_all")


@dataclass
class Calls:
    built: list[tuple[str, str]] = field(default_factory=list)  # (builder, what it built)
    dumped: list[dict[str, Any]] = field(default_factory=list)  # documents given to yaml.dump
    parsed: list[bytes] = field(default_factory=list)  # texts given to a YAML loader
    # The files the schema check read back before writing them: the one reading of this
    # run's own bytes, on purpose (it checks what goes to disk, YAML emitter included).
    validated: list[dict[str, bytes]] = field(default_factory=list)
    validating: bool = False

    def clear(self) -> None:
        self.built.clear()
        self.dumped.clear()
        self.parsed.clear()
        self.validated.clear()


def _subject(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc['kind']}:{meta.get('namespace') or meta.get('name') or ''}"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()

    def wrap(owner: Any, attr: str, record: Callable[[tuple[Any, ...], Any], None]) -> None:
        real = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            record(args, out)
            return out

        monkeypatch.setattr(owner, attr, wrapper)

    def built(name: str) -> Callable[[tuple[Any, ...], Any], None]:
        return lambda _args, doc: seen.built.append((name, _subject(doc)))

    # The builders as the run reaches them: policy_documents calls the first three through
    # their modules, the run's kustomization is built where the decisions are applied.
    wrap(manifests, "tier", built("tier"))
    wrap(manifests, "calico_policy", built("calico_policy"))
    wrap(kubernetes, "network_policy", built("network_policy"))
    wrap(apply_decisions, "kustomization", built("kustomization"))
    wrap(yaml_text, "dump", lambda args, _out: seen.dumped.append(args[0]))
    for loader in LOADERS:

        def parsed(args: tuple[Any, ...], _out: Any) -> None:
            if seen.validating:
                return
            text = args[0]
            seen.parsed.append(text.encode() if isinstance(text, str) else bytes(text))

        wrap(yaml, loader, parsed)
    # The bounded loader (alias and nesting limits) reads with PyYAML's Loader directly.
    wrap(yaml_loader, "iter_all", parsed)
    real_check = schema_tree.check_rendered

    def check(files: dict[str, bytes], flavor: str, only: Any = None) -> Any:
        seen.validated.append({rel: files[rel] for rel in (files if only is None else only)})
        seen.validating = True
        try:
            return real_check(files, flavor, only=only)
        finally:
            seen.validating = False

    monkeypatch.setattr(schema_tree, "check_rendered", check)
    return seen


def policies(out: Path) -> dict[str, bytes]:
    root = out / "policies"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


def digests(out: Path) -> str:
    manifest = json.loads((out / "state" / "manifest.json").read_text())
    table = pl.read_parquet(out / "state" / manifest["tables"]["namespaces"])
    pairs = sorted(table.select("namespace", "digest").iter_rows())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_first_run_builds_and_dumps_each_written_file_once(
    tmp_path: Path, calls: Calls, flavor: str
) -> None:
    out = tmp_path / "out"
    run_flavor(flavor, out)
    written = policies(out)
    assert len(written) > 3
    # One builder call per written file, each file's document built by one of them.
    assert len(calls.built) == len(written)
    assert len({subject for _, subject in calls.built}) == len(written)
    assert [name for name, _ in calls.built].count("kustomization") == 1
    # One YAML dump per written file, of exactly the documents built.
    assert len(calls.dumped) == len(written)
    assert sorted(map(_subject, calls.dumped)) == sorted(s for _, s in calls.built)
    # Nothing this run wrote was read back, but by the schema check of exactly those files.
    assert not set(calls.parsed) & set(written.values())
    assert calls.validated == [written]
    assert digests(out) == GOLDEN_DIGESTS[flavor]


def _steps(root: Path, calls: Calls) -> Iterator[tuple[str, Path, dict[str, bytes]]]:
    """The review scenario, step by step, with the policy files on disk before each step."""
    before: dict[str, bytes] = {}
    calls.clear()
    for step, out in review_scenario.play(root, main):
        yield step, out, before
        before = policies(out)
        calls.clear()


def test_the_review_scenario_builds_dumps_and_parses_each_file_at_most_once(
    tmp_path: Path, calls: Calls
) -> None:
    parsed_web = False
    for step, out, before in _steps(tmp_path, calls):
        after = policies(out)
        builders = [name for name, _ in calls.built]
        subjects = [subject for _, subject in calls.built]
        assert len(subjects) == len(set(subjects)), step  # each document built once
        assert builders.count("kustomization") == 1, step
        dumped = [_subject(doc) for doc in calls.dumped]
        assert len(dumped) == len(set(dumped)) <= len(after), step  # dumped at most once
        # Unchanged files are reused, not dumped again (the first run dumps everything).
        changed = [rel for rel, data in after.items() if before.get(rel) != data]
        assert len(dumped) >= len(changed), step
        if step == "02-no-change":
            assert dumped == [], step
        # The review reads the files from before the run, never what this run produced; the
        # schema check reads every file the run writes, once, and no file it leaves as it was.
        produced = {data for rel, data in after.items() if before.get(rel) != data}
        assert not set(calls.parsed) & produced, step
        assert calls.validated == [{rel: after[rel] for rel in changed}], step
        parsed_web |= before.get("policies/web.yaml") in calls.parsed
        assert digests(out) == SCENARIO_DIGESTS[step], step
    # The accepted namespace's reviewed policy was read from disk (the wrappers do see parsing).
    assert parsed_web
