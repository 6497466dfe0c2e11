"""The wheel: every mapping file in it, no development tool.

The worker reads the mapping files from inside the package (``mappings.MAPPINGS_DIR``),
so a file left out of the wheel breaks an installed copy while the checkout keeps
working; the development tools run from a clone only. The wheel is built from a copy of
what the build reads, without build isolation (setuptools comes with the test extra),
so nothing is downloaded and the checkout is not written to.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mappings import MAPPINGS_DIR
from pipeline.devtools.demo import SAMPLE

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = Path(sys.modules["pipeline"].__file__ or "").resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The file names inside a wheel built from this checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("pipeline", "topics", "mappings"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(dist)], capture_output=True, timeout=180)
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    (wheel,) = dist.glob("vtstream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def in_wheel(path: Path) -> str:
    """Where a file of the checkout's package sits inside the wheel."""
    return path.resolve().relative_to(PACKAGE_ROOT).as_posix()


def test_the_wheel_carries_no_development_tool(wheel_files: set[str]) -> None:
    """The worker image is this wheel: no emulator, benchmarks, demo or broker launcher in it."""
    assert in_wheel(SAMPLE) == "pipeline/devtools/samples/demo-indicators.txt"  # the sample is where we look
    assert not [name for name in wheel_files if name.startswith("pipeline/devtools/")]
    assert "pipeline/cli/main.py" in wheel_files


def test_the_wheel_ships_every_mapping_file(wheel_files: set[str]) -> None:
    shipped = sorted(p for p in MAPPINGS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert len(shipped) > 10
    missing = [in_wheel(p) for p in shipped if in_wheel(p) not in wheel_files]
    assert not missing, f"not in the wheel: {missing}"

