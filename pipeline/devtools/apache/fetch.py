"""Apache Kafka's jars, fetched once with Maven from the pom beside this module.

``mvn dependency:copy-dependencies`` copies ``org.apache.kafka:kafka_2.13`` and
everything it needs into a folder under the user's cache
(``$XDG_CACHE_HOME/vtstream/apache-kafka-<version>/libs``, default
``~/.cache``); Maven keeps its own copy in ``~/.m2``, so a second checkout or a
wiped cache costs a local copy, not a download. ``make kafka-libs`` (a step of
``make test``) and every launcher call go through :func:`kafka_libs`.

Without ``java`` or ``mvn`` on PATH this stops with an error that names what
is missing: the suite proves its Kafka claims on Apache Kafka and must not
pass quietly without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

POM = Path(__file__).resolve().with_name("pom.xml")
#: A folder is complete once this file is in it (written after Maven finished).
STAMP = ".complete"


class MissingTool(RuntimeError):
    """java or mvn is not installed: Apache Kafka cannot be fetched or run."""


def kafka_version() -> str:
    """The Apache Kafka version the pom asks for."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise RuntimeError(f"{POM} names no kafka.version")
    return match.group(1)


def cache_folder() -> Path:
    """Where the jars of this version live: $XDG_CACHE_HOME/vtstream/apache-kafka-<version>."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vtstream" / f"apache-kafka-{kafka_version()}"


def require(tool: str, why: str) -> str:
    """The path of ``tool`` on PATH, or MissingTool naming it and what it is for."""
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"'{tool}' is not on PATH: {why}. Install a JDK 17+ and Maven "
                          "(Debian: apt-get install openjdk-17-jdk-headless maven)")
    return path


def java() -> str:
    return require("java", "Apache Kafka's broker runs on a JVM (JDK 17 or later)")


def kafka_libs(quiet: bool = True) -> Path:
    """The folder of Apache Kafka's jars, fetched with Maven the first time."""
    folder = cache_folder() / "libs"
    java()
    if (folder / STAMP).exists():
        return folder
    mvn = require("mvn", "Maven fetches Apache Kafka's jars from Maven Central")
    staging = folder.with_name(f"libs.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [mvn, "-B", *(["-q"] if quiet else []), "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}"]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"Maven could not fetch Apache Kafka ({' '.join(command)}):\n{done.stdout[-3000:]}")
    (staging / STAMP).write_text(kafka_version() + "\n")
    if folder.exists() and not (folder / STAMP).exists():  # an interrupted copy of an older layout
        shutil.rmtree(folder, ignore_errors=True)
    try:
        staging.rename(folder)  # atomic: parallel test processes either see a whole folder or none
    except OSError:  # another process got there first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def main() -> None:
    """``python -m pipeline.devtools.apache.fetch``: fetch once, print the folder (``make kafka-libs``)."""
    try:
        print(kafka_libs(quiet=False))
    except MissingTool as exc:
        sys.exit(f"Error: {exc}")


if __name__ == "__main__":
    main()
