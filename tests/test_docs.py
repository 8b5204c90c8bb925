"""The docs that mirror code must agree with it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from progresskit import SOURCE_VOCABULARIES

ROOT = Path(__file__).resolve().parent.parent


def test_hook_reference_is_generated_from_hookspec() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_hooks_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "hooks.md").read_text() == module.render(), (
        "docs/hooks.md is stale: run python scripts/gen_hooks_doc.py"
    )


def test_status_table_matches_the_vocabularies() -> None:
    text = (ROOT / "docs" / "status.md").read_text()
    section = text.split("## Source vocabularies", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \|$", section, re.MULTILINE)
    documented = {(s, v, c) for s, v, c in rows if s != "source"}
    actual = {
        (source, value, status.value)
        for source, words in SOURCE_VOCABULARIES.items()
        for value, status in words.items()
    }
    assert documented == actual


def test_readme_commands_are_the_ci_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/install-dev.sh" in readme and "scripts/test.sh" in readme
    assert "scripts/install-dev.sh" in ci and "scripts/test.sh" in ci


def test_the_architecture_page_names_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## What lives where", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.MULTILINE))
    package = ROOT / "src" / "progresskit"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        # A package's __init__ is its heading; an old module path is told of as a group.
        if (path.parent == package or path.name != "__init__.py")
        and "this path works for one release" not in path.read_text().lower()
    }
    assert sorted(modules - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - modules) == [], "docs/architecture.md names modules that do not exist"
