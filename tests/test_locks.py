"""The two locks and the installs that use them.

requirements/runtime.txt pins exactly the closure of `[project].dependencies` (what `make run`
and the image install: no test, lint, Spark or notebook package); requirements/dev.txt pins
everything `make test` installs, with the runtime packages at the runtime lock's versions. The
closures are walked through the installed packages' metadata: this environment was installed
from the locks, which the walk checks version by version.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tomllib
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from locks import DEV_LOCK, REPO, RUNTIME_LOCK, pins
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tools import need

PROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
# pip freeze leaves out the installer's own packages; so do the locks.
INSTALLER = frozenset({"pip", "setuptools", "wheel"})


def group(name: str) -> list[str]:
    """The requirements of dependency group `name`, included groups expanded (PEP 735)."""
    found: list[str] = []
    for item in PROJECT["dependency-groups"][name]:
        found += group(item["include-group"]) if isinstance(item, dict) else [item]
    return found


# The container image installs the s3 extra beside the runtime (the S3 overlay uses it); the
# runtime lock pins exactly that, and `make run` installs the runtime alone under it.
IMAGE_EXTRAS = ("s3",)


def runtime_requirements() -> list[str]:
    extras = PROJECT["project"]["optional-dependencies"]
    return [*PROJECT["project"]["dependencies"], *(r for e in IMAGE_EXTRAS for r in extras[e])]


def dev_requirements() -> list[str]:
    extras = PROJECT["project"]["optional-dependencies"].values()
    return [*runtime_requirements(), *(r for e in extras for r in e), *group("dev")]


def closure(requirements: Iterable[str]) -> dict[str, str]:
    """{name: installed version} of every distribution `requirements` need, markers evaluated
    for this machine and each requested extra followed."""
    seen: set[tuple[str, str]] = set()
    found: dict[str, str] = {}
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        found[name] = metadata.version(name)
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                todo += [(Requirement(t), wanted) for t in metadata.requires(name) or ()]
    return {k: v for k, v in found.items() if k not in INSTALLER}


def test_runtime_lock_is_exactly_the_runtime_closure() -> None:
    lock = pins(RUNTIME_LOCK)
    assert closure(runtime_requirements()) == lock
    dev_only = {"pytest", "ruff", "mypy", "hypothesis", "pyspark", "marimo", "mkdocs"}
    assert not dev_only & lock.keys()


def test_dev_lock_is_exactly_what_make_test_installs() -> None:
    assert closure(dev_requirements()) == pins(DEV_LOCK)


def test_dev_lock_keeps_every_runtime_pin() -> None:
    dev = pins(DEV_LOCK)
    differ = {k: (v, dev.get(k)) for k, v in pins(RUNTIME_LOCK).items() if dev.get(k) != v}
    assert not differ


def test_each_lock_satisfies_the_requirements_it_installs() -> None:
    for lock, requirements in (
        (pins(RUNTIME_LOCK), runtime_requirements()),
        (pins(DEV_LOCK), dev_requirements()),
    ):
        for text in requirements:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in lock, text
            assert req.specifier.contains(lock[name], prereleases=True), (text, lock[name])


def _installs(target: str) -> list[list[str]]:
    """The `pip install` commands `make TARGET` would run after pyproject.toml changed."""
    make = need("make", "to read what `make run` and `make test` install")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        [make, "-n", "-W", "pyproject.toml", target],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [shlex.split(ln) for ln in result.stdout.splitlines() if "pip" in ln]
    return [w for w in lines if "install" in w and "pip>=25.1" not in w]  # not pip itself


def test_make_run_installs_the_runtime_lock_only() -> None:
    (words,) = _installs("run")
    assert words[words.index("--constraint") + 1] == "requirements/runtime.txt"
    assert words[words.index("--editable") + 1] == "."
    assert "--group" not in words


def test_make_test_adds_every_extra_and_the_dev_group() -> None:
    runtime, dev = _installs("test")
    assert runtime == _installs("run")[0]
    assert dev[dev.index("--constraint") + 1] == "requirements/dev.txt"
    assert dev[dev.index("--group") + 1] == "dev"
    target = dev[dev.index("--editable") + 1]
    assert target.startswith(".[") and target.endswith("]")
    extras = set(target[2:-1].split(","))
    assert extras == set(PROJECT["project"]["optional-dependencies"])
