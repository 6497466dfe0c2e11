"""The README is part of the product: its two commands and its settings table must stay true."""

from pathlib import Path

import pytest

from pipeline.settings import settings_doc

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
#: The README and the pages behind it (docs/): a setting documented in either counts.
DOCUMENTED = README + "".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))


def test_readme_opens_with_the_two_commands():
    head = "\n".join(README.splitlines()[:15])
    assert "make demo" in head and "make test" in head


def test_every_setting_is_in_the_readme_table_with_its_default():
    for env, default, _ in settings_doc():
        assert f"| `{env}` | `{default}` |" in DOCUMENTED, env


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci
