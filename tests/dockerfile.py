"""Reads the Dockerfile and runs its stages' commands on this machine (tests/test_image.py).

No container engine can pull a base image here, so each stage runs in a scratch folder that
stands for its filesystem root, with a fresh virtual environment of the base image's Python
standing for the image's interpreter. Absolute paths in a RUN command (`/wheels`, `/tmp/sql`)
are moved under that folder; `--mount=type=bind` becomes a link for that one step, and
`--mount=type=cache` a link to this machine's pip cache. The stages named offline (the test
names the final one) run with every package index and proxy pointed at a closed port on
127.0.0.1, inside a network namespace of its own where `unshare` allows one.

Only the instructions our Dockerfile uses are understood: anything else fails the test rather
than being skipped. The one RUN not executed is the one that creates the image's user
(`groupadd`/`useradd` would change this machine's accounts); `skipped` lists it for the test.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Port 9 (discard) on loopback: nothing listens, so a connection is refused at once.
CLOSED = "http://127.0.0.1:9"
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
# First path components left alone when rewriting a command's absolute paths.
_SYSTEM = frozenset({"bin", "dev", "etc", "lib", "nonexistent", "proc", "sbin", "sys", "usr"})
_ABSOLUTE = re.compile(r"(?<![\w.~/-])/[\w.-][^\s'\"),;:]*")
_USER_SETUP = ("groupadd ", "useradd ")


@dataclass(frozen=True)
class Step:
    op: str
    flags: tuple[str, ...]
    args: str

    def flag(self, name: str) -> list[str]:
        """The values of `--name=...`, in order (a flag such as --mount may repeat)."""
        return [f.split("=", 1)[1] for f in self.flags if f.startswith(f"--{name}=")]

    def mounts(self) -> list[dict[str, str]]:
        """The options of each `--mount=type=...,source=...,target=...`."""
        return [dict(o.split("=", 1) for o in spec.split(",")) for spec in self.flag("mount")]


@dataclass(frozen=True)
class Stage:
    name: str
    image: str
    steps: tuple[Step, ...]

    def runs(self) -> list[Step]:
        return [s for s in self.steps if s.op == "RUN"]

    def last(self, op: str) -> str | None:
        found = [s.args for s in self.steps if s.op == op]
        return found[-1] if found else None


def parse(path: Path) -> list[Stage]:
    """The stages of the Dockerfile at `path`: continuations joined, comments dropped, global
    ARG defaults substituted into FROM."""
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", "", "\n".join(lines))
    args: dict[str, str] = {}
    stages: list[tuple[str, str, list[Step]]] = []
    for line in filter(None, (ln.strip() for ln in joined.splitlines())):
        op, _, rest = line.partition(" ")
        split = re.fullmatch(r"((?:--\S+\s+)*)(.*)", rest.strip(), re.DOTALL)
        assert split is not None, line
        step = Step(op.upper(), tuple(split[1].split()), split[2].strip())
        if step.op == "ARG" and not stages:
            key, _, value = step.args.partition("=")
            args[key] = value
        elif step.op == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], step.args).split()
            assert len(words) == 3 and words[1].upper() == "AS", step.args
            stages.append((words[2], words[0], []))
        else:
            assert stages, f"{op} before the first FROM"
            stages[-1][2].append(step)
    return [Stage(name, image, tuple(steps)) for name, image, steps in stages]


def dockerignore(context: Path) -> list[str]:
    patterns = [
        ln.strip()
        for ln in (context / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not emulated"
    return [p.rstrip("/") for p in patterns]


def ignored(rel: str, patterns: Iterable[str]) -> bool:
    """Whether the context path `rel` is left out of the build context (a folder that matches
    leaves out everything under it; `**/` matches at any depth)."""
    parts = rel.split("/")
    for end in range(1, len(parts) + 1):
        for pattern in patterns:
            if pattern.startswith("**/"):
                tails = ("/".join(parts[start:end]) for start in range(end))
                if any(fnmatch.fnmatchcase(t, pattern[3:]) for t in tails):
                    return True
            elif fnmatch.fnmatchcase("/".join(parts[:end]), pattern):
                return True
    return False


@functools.cache
def can_unshare() -> bool:
    """Whether this machine lets a process take a network namespace of its own."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def offline(env: dict[str, str]) -> dict[str, str]:
    """`env` with every index and proxy pointed at a closed port: a download fails at once."""
    blocked = dict(env, PIP_INDEX_URL=f"{CLOSED}/simple", PIP_RETRIES="0", PIP_TIMEOUT="3")
    blocked.update({name: CLOSED for name in _PROXIES})
    blocked.pop("NO_PROXY", None)
    blocked.pop("no_proxy", None)
    return blocked


def command(argv: list[str], network: bool) -> list[str]:
    """`argv`, inside a network namespace of its own when there is to be no network."""
    return argv if network or not can_unshare() else ["unshare", "-rn", *argv]


@dataclass
class Build:
    """What running the stages left: each stage's root folder and interpreter."""

    roots: dict[str, Path] = field(default_factory=dict)
    pythons: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    env: dict[str, dict[str, str]] = field(default_factory=dict)


class Runner:
    """Runs the stages of one Dockerfile in order under `scratch`, with the build context
    `context` and `python` (an interpreter of the base image's version) as base image."""

    def __init__(self, context: Path, scratch: Path, python: str, pip_cache: Path) -> None:
        self.context = context.resolve()
        self.scratch = scratch
        self.python = python
        self.pip_cache = pip_cache
        self.patterns = dockerignore(context)
        self.build = Build()

    def run(self, stages: list[Stage], offline: Collection[str]) -> Build:
        """Run `stages` in order, those named in `offline` with no network."""
        for stage in stages:
            self._stage(stage, network=stage.name not in offline)
        return self.build

    def base_env(self, root: Path, python: Path) -> dict[str, str]:
        """The process environment of a stage: none of this machine's pip settings (its
        config files, find-links, caches) and the stage's interpreter first on PATH."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON")) and k != "XDG_CACHE_HOME"
        }
        env["PIP_CONFIG_FILE"] = os.devnull
        env["HOME"] = str(root / "root")
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def _stage(self, stage: Stage, network: bool) -> None:
        root = self.scratch / stage.name
        (root / "root").mkdir(parents=True)
        python = self.scratch / f"{stage.name}-python" / "bin" / "python"
        env = self.base_env(root, python)
        made = subprocess.run(
            [self.python, "-m", "venv", str(python.parent.parent)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert made.returncode == 0 and python.is_file(), made.stderr
        self.build.roots[stage.name] = root
        self.build.pythons[stage.name] = python
        cwd = root
        user: str | None = None
        for step in stage.steps:
            if step.op == "ENV":
                env.update(kv.split("=", 1) for kv in shlex.split(step.args))
            elif step.op == "WORKDIR":
                cwd = self.host(root, step.args)
                cwd.mkdir(parents=True, exist_ok=True)
            elif step.op == "COPY":
                self._copy(step, cwd)
            elif step.op == "RUN":
                assert user is None, "a RUN after USER is not emulated"
                self._run(step, root, cwd, env if network else offline(env), network)
            elif step.op == "USER":
                user = step.args
            elif step.op not in ("LABEL", "ENTRYPOINT", "CMD"):
                raise AssertionError(f"{step.op} is not emulated")
        self.build.env[stage.name] = env

    def host(self, root: Path, path: str) -> Path:
        return root / path.lstrip("/")

    def _copy(self, step: Step, cwd: Path) -> None:
        assert not step.flags, f"COPY {step.flags} is not emulated"
        *sources, dest = shlex.split(step.args)
        target = cwd / dest
        for source in sources:
            assert not ignored(source.rstrip("/"), self.patterns), f"{source} is .dockerignored"
            origin = self.context / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=self._ignore, dirs_exist_ok=True)
            else:
                into = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)

    def _ignore(self, folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).resolve().relative_to(self.context.resolve()).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        return [n for n in names if ignored(prefix + n, self.patterns)]

    def _run(self, step: Step, root: Path, cwd: Path, env: dict[str, str], network: bool) -> None:
        script = step.args
        parts = [p.strip() for p in script.split("&&")]
        if all(p.startswith(_USER_SETUP) for p in parts):
            self.build.skipped.append(script)
            return
        unknown = [f for f in step.flags if not f.startswith("--mount=")]
        assert not unknown, f"RUN {unknown} is not emulated"
        links = [self._mount(root, options) for options in step.mounts()]

        def rewrite(match: re.Match[str]) -> str:
            path = match[0]
            return path if path.split("/")[1] in _SYSTEM else str(self.host(root, path))

        argv = command(["/bin/sh", "-c", _ABSOLUTE.sub(rewrite, script)], network=network)
        try:
            result = subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, check=False
            )
        finally:
            for link in links:
                link.unlink()
        assert result.returncode == 0, f"RUN {script}\n{result.stdout}\n{result.stderr}"

    def _mount(self, root: Path, options: dict[str, str]) -> Path:
        """A link standing for one mount of one RUN step."""
        target = self.host(root, options["target"])
        if options["type"] == "cache":
            origin = self.pip_cache
            origin.mkdir(parents=True, exist_ok=True)
        else:
            assert options["type"] == "bind", options
            source = options.get("source", ".")
            if "from" in options:
                origin = self.host(self.build.roots[options["from"]], source)
            else:
                assert not ignored(source, self.patterns), f"{source} is .dockerignored"
                origin = self.context / source
        assert origin.exists(), options
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(origin, target_is_directory=origin.is_dir())
        return target
