"""The container image: the Dockerfile's stages, run in order on this machine.

No base image can be pulled here, so tests/dockerfile.py runs each stage's commands in a scratch
folder with a fresh virtual environment of the base image's Python: the build stage builds the
flowfence wheel and downloads the runtime lock's wheels from the package index; the final stage
installs them with no network at all (its index and proxies point at a closed port, inside a
network namespace of its own where the machine allows one) and proves the install itself
(`flowfence --version`, the shipped SQL). Then the installed image runs the golden demo, from
local files and from a bucket on a local S3 server (the image holds the s3 extra), and the
runtime alone (`make run`'s install) refuses an `s3://` location naming the extra.

The static promises (two stages, the runtime lock, a numeric non-root user matching the pod's,
a build context that holds what the build copies) are checked on the parsed Dockerfile.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dockerfile import CLOSED, Runner, Stage, command, dockerignore, ignored, offline, parse
from locks import RUNTIME_LOCK, pins
from regenerate_golden import FLAVORS, GOLDEN, output_files, run_args
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401
from tools import need

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
UID = 10001  # the pod's runAsUser (deploy/base/cronjob.yaml)
DEMO = REPO / "fixtures" / "data" / "demo"

# One worker builds the image once for every test that uses it.
pytestmark = pytest.mark.xdist_group("image")


def stages() -> list[Stage]:
    return parse(DOCKERFILE)


@dataclass(frozen=True)
class Image:
    """The final stage as built: its interpreter's bin/, its working directory, and the
    environment it runs in (no package index, no proxy: nothing to download from)."""

    bin: Path
    workdir: Path
    env: dict[str, str]
    skipped: tuple[str, ...]
    wheels: Path  # what the build stage handed to the final one

    def run(
        self, *args: str, env: dict[str, str] | None = None, bin: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`args` from the image's bin/ (or `bin`), with no network unless `env` is given: the
        environment of a container whose pod may reach an object store."""
        argv = command([str((bin or self.bin) / args[0]), *args[1:]], network=env is not None)
        return subprocess.run(
            argv, cwd=self.workdir, env=env or self.env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip


def _pip_cache() -> Path:
    """This machine's pip cache, standing for the build's cache mount (kept between builds)."""
    if os.environ.get("PIP_CACHE_DIR"):
        return Path(os.environ["PIP_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pip"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    parsed = stages()
    tag = parsed[-1].image.split(":", 1)[1]
    minor = re.match(r"\d+\.\d+", tag)
    assert minor, tag
    python = (
        sys.executable
        if f"{sys.version_info.major}.{sys.version_info.minor}" == minor[0]
        else need(f"python{minor[0]}", "the base image's Python, to run the Dockerfile's stages")
    )
    scratch = tmp_path_factory.mktemp("image")
    build = Runner(REPO, scratch, python, _pip_cache()).run(parsed, offline={parsed[-1].name})
    final = parsed[-1]
    root = build.roots[final.name]
    (wheels,) = [m for step in final.runs() for m in step.mounts() if "from" in m]
    return Image(
        bin=build.pythons[final.name].parent,
        workdir=root / (final.last("WORKDIR") or "/").lstrip("/"),
        env=offline(build.env[final.name]),
        skipped=tuple(build.skipped),
        wheels=build.roots[wheels["from"]] / wheels["source"].lstrip("/"),
    )


# ---- the stages, run ----------------------------------------------------------------------


def test_final_stage_has_no_way_to_download(image: Image) -> None:
    # The control for "no network": the same environment cannot fetch a wheel it lacks.
    result = image.run("python", "-m", "pip", "download", "--no-deps", "-d", "dl", "six")
    assert result.returncode != 0
    assert "six" not in " ".join(p.name for p in image.workdir.glob("dl/*"))


def test_wheel_ships_every_module_data_file_and_query(image: Image) -> None:
    (wheel,) = image.wheels.glob("flowfence-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("flowfence/")}
    source = REPO / "jobs" / "flowfence"
    expected = {
        f"flowfence/{p.relative_to(source).as_posix()}"
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    expected |= {f"flowfence/sql/{p.name}" for p in (REPO / "sql").glob("*.sql")}
    assert shipped == expected


def test_image_holds_exactly_the_runtime_lock(image: Image) -> None:
    frozen = image.run("python", "-m", "pip", "freeze", "--all")
    assert frozen.returncode == 0, frozen.stderr
    installed = dict(
        line.split("==", 1) for line in frozen.stdout.splitlines() if "==" in line
    )  # fmt: skip
    installed = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in installed.items()}
    for tool in ("pip", "setuptools", "wheel"):  # the base image's own
        installed.pop(tool, None)
    assert installed.pop("flowfence") == VERSION
    assert installed == pins(RUNTIME_LOCK)


def test_image_answers_its_version(image: Image) -> None:
    result = image.run("flowfence", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["flowfence", VERSION]


def test_image_runs_the_golden_demo(image: Image) -> None:
    flavor = FLAVORS[0]
    out = image.workdir / "out"
    result = image.run("flowfence", *run_args(flavor, out))
    assert result.returncode == 0, result.stderr
    expected = {
        p.relative_to(GOLDEN / flavor).as_posix(): p.read_bytes()
        for p in sorted((GOLDEN / flavor).rglob("*"))
        if p.is_file()
    }
    produced = output_files(out)
    assert sorted(produced) == sorted(expected)
    assert [name for name in expected if produced[name] != expected[name]] == []


def test_image_validates_with_the_schemas_it_ships(image: Image) -> None:
    # The CRD schemas are package data: the installed package finds them, not the checkout.
    clean = image.run("flowfence", "validate", str(REPO / "fixtures" / "policies"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = image.workdir / "bad-policies"
    bad.mkdir(exist_ok=True)
    (bad / "tier.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n"
        "spec: {order: 10, colour: blue}\n"
    )
    refused = image.run("flowfence", "validate", str(bad))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "colour" in refused.stdout + refused.stderr


def test_image_reads_flows_and_state_from_s3(image: Image, s3: S3) -> None:
    # The image holds the s3 extra (the S3 overlay runs it): the golden demo from a bucket on
    # a local S3 server, state included, gives the golden policies.
    flavor = FLAVORS[0]
    for file in sorted(DEMO.rglob("*.parquet")):
        s3.upload(file, f"flows/{file.relative_to(DEMO).as_posix()}")
    out = image.workdir / "out-s3"
    args = run_args(flavor, out)
    args[args.index("--flows") + 1] = s3.url("flows")
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "NO_PROXY"))}
    result = image.run("flowfence", *args, "--state", s3.url("state"), env=image.env | env)
    assert result.returncode == 0, result.stderr
    produced = output_files(out)
    policies = sorted(p for p in produced if p.startswith("policies/"))
    assert policies and all(produced[p] == (GOLDEN / flavor / p).read_bytes() for p in policies), (
        "the policies learned from S3 differ from the golden ones"
    )
    assert "state/manifest.json" in s3.keys("state")


@pytest.fixture(scope="module")
def runtime_only(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make run`'s install (the runtime, no extra) from the image's wheels, offline."""
    venv = tmp_path_factory.mktemp("runtime-only") / "venv"
    made = image.run("python", "-m", "venv", str(venv))
    assert made.returncode == 0, made.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index"]
    installed = subprocess.run(
        command([*pip, "--find-links", str(image.wheels), "flowfence"], network=False),
        env=image.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return venv / "bin"


def test_s3_without_the_extra_names_it(image: Image, runtime_only: Path) -> None:
    out = image.workdir / "out-no-s3"
    result = image.run(
        "flowfence", "run", "--flows", "s3://flows-bucket/demo", "--out", str(out),
        "--now", "2026-11-02T00:00:00Z", bin=runtime_only,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'flowfence[s3]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_only_the_user_setup_is_not_run(image: Image) -> None:
    assert len(image.skipped) == 1
    words = shlex.split(image.skipped[0])
    assert words[:2] == ["groupadd", "--system"] and "useradd" in words
    assert words[words.index("--uid") + 1] == str(UID)


# ---- the Dockerfile, read ---------------------------------------------------------------


def test_two_stages_from_the_runtime_lock() -> None:
    parsed = stages()
    assert len(parsed) == 2
    build, runtime = parsed
    for stage in parsed:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.image)
    copied = {src for s in build.steps if s.op == "COPY" for src in shlex.split(s.args)[:-1]}
    assert {"pyproject.toml", "README.md", "requirements/runtime.txt", "jobs/", "sql/"} <= copied
    assert not [src for src in copied if "dev.txt" in src]
    assert "requirements/runtime.txt" in " ".join(s.args for s in build.runs())
    install = next(s for s in runtime.runs() if "pip install" in s.args)
    words = shlex.split(install.args)
    assert "--no-index" in words and "--find-links" in words
    mounts = install.mounts()
    assert any(m.get("from") == "build" for m in mounts)
    assert any(m.get("source") == "requirements/runtime.txt" for m in mounts)
    assert "flowfence --version" in install.args
    for step in runtime.steps:
        assert step.op != "ADD", step.args
        assert not re.search(r"\b(curl|wget|apt-get|apk)\b", step.args), step.args


def test_runs_as_the_pods_non_root_user() -> None:
    runtime = stages()[-1]
    user = runtime.last("USER")
    assert user == f"{UID}:{UID}"  # numeric: Kubernetes checks runAsNonRoot without /etc/passwd
    assert runtime.last("ENTRYPOINT") == '["flowfence"]'
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "flowfence" in scripts
    cronjob = yaml.safe_load((REPO / "deploy" / "base" / "cronjob.yaml").read_text())
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (UID, UID)


def test_build_context_keeps_what_the_build_uses() -> None:
    patterns = dockerignore(REPO)
    assert {".git", ".venv", "fixtures", "tests", "**/*.egg-info"} <= set(patterns)
    assert ignored("jobs/flowfence.egg-info/PKG-INFO", patterns)
    assert ignored("jobs/flowfence/core/__pycache__/sql.cpython-311.pyc", patterns)
    used = []
    for stage in stages():
        for step in stage.steps:
            if step.op == "COPY" and not step.flag("from"):
                used += shlex.split(step.args)[:-1]
            for options in step.mounts():
                if options["type"] == "bind" and "from" not in options:
                    used.append(options["source"])
    assert used
    for src in used:
        assert (REPO / src).exists(), src
        assert not ignored(src.rstrip("/"), patterns), src


def test_offline_points_every_index_and_proxy_at_a_closed_port() -> None:
    env = offline({"PATH": "/usr/bin", "NO_PROXY": "*"})
    assert env["PIP_INDEX_URL"].startswith(CLOSED)
    assert env["https_proxy"] == env["HTTPS_PROXY"] == CLOSED
    assert "NO_PROXY" not in env
