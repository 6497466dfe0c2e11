"""The README is part of the product: its two commands and its settings table must stay true."""

from pathlib import Path

import pytest

from pipeline.settings import settings_doc
from pipeline.settings.core import configuration_markdown

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    head = "\n".join(README.splitlines()[:15])
    assert "make demo" in head and "make test" in head


def test_the_configuration_page_is_generated_from_the_settings():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text() == configuration_markdown(), "run: vtstream config --markdown > docs/configuration.md"
    assert all(f"| `{env}` |" in page.read_text() for env, _, _ in settings_doc())


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci
