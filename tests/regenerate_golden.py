"""Rewrite the golden files in tests/golden/ from the current code.

Usage, from the repository root:

    .venv/bin/python tests/regenerate_golden.py            # every flavor
    .venv/bin/python tests/regenerate_golden.py calico     # one flavor

For each flavor it runs `flowfence run` over the bundled demo shop (fixtures/data/demo) with the
fixed clock `--now 2026-11-02T00:00:00Z`, `--namespaces fixtures/namespaces.yaml` and
`--existing-policies fixtures/policies` (exactly what tests/test_run_golden.py runs), and
replaces tests/golden/<flavor>/ with `policies/*`, `report.json` and `report.md`; files the run
no longer writes are removed. The golden files are the specification the tests hold the engine
to: read the diff (`git diff tests/golden`) as a Calico reviewer would (no rule wider than the
traffic, nothing a higher tier decides, right ports and peers) before committing it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
FLAVORS = ("calico-enterprise", "calico", "kubernetes")
NOW = "2026-11-02T00:00:00Z"
REPORTS = ("report.json", "report.md")


def run_args(flavor: str, out: Path) -> list[str]:
    """The `flowfence run` arguments of the golden run for `flavor`."""
    return [
        "run",
        "--flows",
        str(REPO / "fixtures" / "data" / "demo"),
        "--out",
        str(out),
        "--now",
        NOW,
        "--namespaces",
        str(REPO / "fixtures" / "namespaces.yaml"),
        "--existing-policies",
        str(REPO / "fixtures" / "policies"),
        "--flavor",
        flavor,
        "--output",
        "json",
    ]


def output_files(root: Path) -> dict[str, bytes]:
    """The compared outputs under `root`: every file under policies/ plus the two reports."""
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "policies").rglob("*"))
        if p.is_file()
    }
    for name in REPORTS:
        if (root / name).is_file():
            files[name] = (root / name).read_bytes()
    return files


def run_flavor(flavor: str, out: Path) -> dict[str, bytes]:
    """Run the golden command for `flavor` into `out` and return its output files."""
    from flowfence.cli.app import main

    code = main(run_args(flavor, out))
    if code != 0:
        raise SystemExit(f"flowfence run --flavor {flavor} exited {code}")
    return output_files(out)


def regenerate(flavor: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = run_flavor(flavor, Path(tmp) / "out")
    target = GOLDEN / flavor
    if target.exists():
        shutil.rmtree(target)
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(files)


def main(argv: list[str]) -> int:
    flavors = argv or list(FLAVORS)
    unknown = [f for f in flavors if f not in FLAVORS]
    if unknown:
        print(f"unknown flavor(s) {unknown}; expected {', '.join(FLAVORS)}", file=sys.stderr)
        return 2
    for flavor in flavors:
        count = regenerate(flavor)
        # stdout of the runs above carries their JSON reports; keep the summary on stderr.
        print(f"{flavor}: wrote {count} files to {GOLDEN / flavor}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
