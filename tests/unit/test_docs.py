"""The README and docs/ are part of the product: they must stay short, linked and true to the code.

- the README reads in ten minutes (at most 350 lines) and its folder map names every folder;
- every relative link in README.md and docs/*.md resolves, anchors included (GitHub's rules);
- every ``VTSTREAM_*`` name they mention is a setting, or a variable of the tools that is read;
- docs/architecture.md lists every module of pipeline/, and only modules that exist;
- docs/libraries.md names every dependency in pyproject.toml;
- nothing cites a file outside the repository.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

import pytest

from pipeline.settings import settings_doc

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 350


_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ENV_NAME = re.compile(r"VTSTREAM_[A-Z0-9_]+")


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces to hyphens.

    >>> slug("STIX 2.1 and TAXII 2.1"), slug("Output events: indicators.enriched")
    ('stix-21-and-taxii-21', 'output-events-indicatorsenriched')
    >>> slug("`pipeline/kafka/`: Kafka plumbing"), slug("[Link](x.md) and *emphasis*")
    ('pipelinekafka-kafka-plumbing', 'link-and-emphasis')
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub makes for a page's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """Every link target of a page, outside code blocks and code spans."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        targets += _LINK.findall(_CODE_SPAN.sub("code", line))
    return targets


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, folder or anchor does not exist."""
    broken = []
    for target in links(page):
        if _SCHEME.match(target):
            continue  # a web address: not checked here
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    return broken


# ------------------------------------------------------------------------------ the README

def test_the_readme_reads_in_ten_minutes() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; at most {MAX_README_LINES}: move detail to docs/"


def folder_map() -> set[str]:
    """The folders the README's map names, as paths from the root (``pipeline/kafka``)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^```\n(pipeline/ .*?)^```", text, re.S | re.M)
    assert block, "README.md: the folder map (a code block starting with 'pipeline/') is missing"
    named, parents = set(), []
    for line in block.group(1).splitlines():
        match = re.match(r"^( *)(\S+)/(\s|$)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        parents = parents[:depth] + [match.group(2)]
        named.add("/".join(parents))
    return named


def real_folders() -> set[str]:
    """Every package of pipeline/ (data folders belong to their package's line), and every
    top-level folder a clone has."""
    skipped = {"__pycache__", "build", "dist"}
    top = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
           and p.name not in skipped and not p.name.endswith(".egg-info")}
    inner = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*")
             if p.is_dir() and (p / "__init__.py").is_file()}
    return top | inner


def test_the_folder_map_names_every_folder_and_only_real_ones() -> None:
    named, real = folder_map(), real_folders()
    assert not real - named, f"folders missing from the README's folder map: {sorted(real - named)}"
    assert all((ROOT / name).is_dir() for name in named), \
        f"the README's folder map names folders that do not exist: {sorted(n for n in named if not (ROOT / n).is_dir())}"


# ------------------------------------------------------------------------------ links

@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert not broken_links(page), f"{page.relative_to(ROOT)}: broken links {broken_links(page)}"


def test_links_are_found() -> None:
    """The link check sees links at all (a parser that finds none would pass every page)."""
    assert len(links(README)) >= 15
    assert "architecture.md#every-module" in "".join(links(README))


# ------------------------------------------------------------------------------ settings named

SETTINGS = {env for env, _, _ in settings_doc()}


def tool_variables() -> dict[str, str]:
    """Variables of the tools (tests, deployment), from docs/testing.md: name -> the file that reads it."""
    text = (DOCS / "testing.md").read_text(encoding="utf-8")
    section = text.split("## Environment variables of the tools", 1)[1]
    return dict(re.findall(r"^\| `(VTSTREAM_[A-Z0-9_]+)` \| `([^`]+)` \|", section, re.M))


def test_every_variable_the_docs_name_is_a_setting_or_a_tool_variable() -> None:
    known = SETTINGS | set(tool_variables())
    unknown = []
    for page in pages():
        for name in set(_ENV_NAME.findall(page.read_text(encoding="utf-8"))):
            if name.endswith("_"):  # a family written as VTSTREAM_KAFKA_SSL_*: some setting must have it
                if not any(setting.startswith(name) for setting in SETTINGS):
                    unknown.append(f"{page.name}: {name}*")
            elif name not in known:
                unknown.append(f"{page.name}: {name}")
    assert not unknown, f"not a setting (pipeline/settings/) nor a tool variable (docs/testing.md): {sorted(unknown)}"


def test_every_tool_variable_is_read_where_the_docs_say() -> None:
    variables = tool_variables()
    assert len(variables) >= 3
    for name, where in variables.items():
        files = [ROOT / where] if (ROOT / where).is_file() else sorted((ROOT / where).rglob("*.py"))
        assert any(name in f.read_text(encoding="utf-8") for f in files), f"{name} is not read in {where}"
        assert name not in SETTINGS, f"{name} is a setting: document it in pipeline/settings/, not as a tool variable"


# ------------------------------------------------------------------------------ modules

def pipeline_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*.py") if "__pycache__" not in p.parts}


def listed_modules() -> list[str]:
    """The modules of pipeline/ that docs/architecture.md's "Every module" section links to."""
    page = DOCS / "architecture.md"
    section = page.read_text(encoding="utf-8").split("\n## Every module\n", 1)[1]
    listed = []
    for line in prose_lines(section):
        for target in _LINK.findall(_CODE_SPAN.sub("code", line)):
            path = (page.parent / target.partition("#")[0]).resolve()
            if path.suffix == ".py" and path.is_relative_to(ROOT / "pipeline"):
                listed.append(path.relative_to(ROOT).as_posix())
    return listed


def test_the_architecture_page_lists_every_module_once_and_only_real_ones() -> None:
    listed, real = listed_modules(), pipeline_modules()
    assert not real - set(listed), f"modules missing from docs/architecture.md: {sorted(real - set(listed))}"
    assert not set(listed) - real, f"docs/architecture.md lists modules that do not exist: {sorted(set(listed) - real)}"
    assert len(listed) == len(set(listed)), "a module is listed twice in docs/architecture.md"


# ------------------------------------------------------------------------------ libraries, citations

def dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in specs}


def test_the_libraries_page_names_every_dependency() -> None:
    text = (DOCS / "libraries.md").read_text(encoding="utf-8").lower()
    missing = sorted(name for name in dependencies() if name.lower() not in text)
    assert not missing, f"dependencies in pyproject.toml with no row in docs/libraries.md: {missing}"


_MD_NAME = re.compile(r"[A-Za-z0-9_-]+\.md\b")
_UPWARD = re.compile(r"(?:\.\./)+[A-Za-z0-9_./-]*")


@functools.cache
def markdown_names() -> frozenset[str]:
    """The names of the repository's Markdown files (hidden folders and the virtualenv aside)."""
    found = {path.name for path in ROOT.glob("*.md")}
    for top in ROOT.iterdir():
        if top.is_dir() and not top.name.startswith(".") and top.name != "build":
            found |= {path.name for path in top.rglob("*.md")}
    return frozenset(found)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_cites_files_outside_the_repository(page: Path) -> None:
    """A page may name only what a clone has: every path it climbs with ``../`` stays inside the
    repository, and every Markdown file it names, linked or not, is one of the repository's."""
    text = page.read_text(encoding="utf-8")
    outside = [path for path in _UPWARD.findall(text) if not (page.parent / path).resolve().is_relative_to(ROOT)]
    unknown = sorted(set(_MD_NAME.findall(text)) - markdown_names())
    assert not outside and not unknown, (f"{page.relative_to(ROOT)} cites what no clone has: "
                                         f"{outside + unknown}")
