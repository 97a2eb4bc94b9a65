"""Reads the two locks (requirements/runtime.txt and requirements/dev.txt) for the tests."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = REPO / "requirements" / "runtime.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a lock; every line is a comment or an exact `name==version`."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not any(c in version for c in " ;<>=~!"), line
        key = canonicalize_name(name)
        assert key not in found, f"{path.name}: {name} pinned twice"
        found[key] = version
    return found
