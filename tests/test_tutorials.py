"""The tutorials' example plugins work as written: built from the markdown, installed into a
fresh virtualenv, found through their entry points, and their own tests pass there."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = {
    "writing-a-tracker.md": "progresskit-shards",
    "writing-a-sink.md": "progresskit-csvtable",
}
#: A fenced block that is a file of the example: ```lang title="relative/path"
FILE_BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def example_files(doc: str) -> dict[str, str]:
    """The example package of a tutorial: relative path -> content."""
    files = dict(FILE_BLOCK.findall((ROOT / "docs" / doc).read_text(encoding="utf-8")))
    assert files, f"docs/{doc} holds no ```lang title=\"path\" blocks"
    return files


def write_example(doc: str, into: Path) -> Path:
    package = into / TUTORIALS[doc]
    for relative, content in example_files(doc).items():
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return package


@pytest.mark.parametrize("doc", sorted(TUTORIALS))
def test_the_example_is_a_whole_package(doc: str) -> None:
    files = example_files(doc)
    pyproject = files["pyproject.toml"]
    assert f'name = "{TUTORIALS[doc]}"' in pyproject
    # NAME = "module" or NAME = "module:object" (a plugin object, e.g. a TrackerSpec)
    entry_point = re.search(
        r'^\[project\.entry-points\.progresskit\]\n(\w+) = "([\w.]+)(?::\w+)?"$',
        pyproject,
        re.MULTILINE,
    )
    assert entry_point, "the example registers no progresskit entry point"
    name, target = entry_point.groups()
    module = "src/" + target.replace(".", "/") + ".py"
    assert module in files, f"the entry point {name} = {target} names no file of the example"
    for path, source in files.items():
        if path.endswith(".py"):
            ast.parse(source, path)
    assert any(p.startswith("tests/test_") for p in files)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    completed = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, (
        f"{' '.join(args)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )
    return completed


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv that sees this environment's packages (progresskit, pytest,
    setuptools: no network needed) but installs into its own site-packages."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    own_site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root
    ).stdout.strip()
    # addsitedir, not a bare path: it also runs the .pth files there, which is how
    # editable installs (progresskit itself, during development) are found.
    parents = [p for p in site.getsitepackages() if os.path.isdir(p)]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    Path(own_site, "_progresskit_parent.pth").write_text(lines)
    return python


@pytest.mark.slow
def test_the_tutorial_plugins_install_and_pass_their_own_tests(
    venv: Path, tmp_path: Path
) -> None:
    packages = {doc: write_example(doc, tmp_path) for doc in TUTORIALS}
    for package in packages.values():
        run([str(venv), "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
             "--no-index", str(package)], tmp_path)

    listed = run([str(venv), "-m", "progresskit", "plugins", "--json"], tmp_path)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["shards"]["origin"] == "entry point"
    assert plugins["shards"]["distribution"] == "progresskit-shards"
    assert plugins["shards"]["runner_types"] == ["shards"]
    assert plugins["csvtable"]["distribution"] == "progresskit-csvtable"
    assert plugins["csvtable"]["sink_types"] == ["csv_table"]
    # Installed into the new environment only, not into the one running this test.
    assert "shards" not in {ep.name for ep in md.entry_points(group="progresskit")}

    for doc, package in packages.items():
        result = run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                     package)
        summary = result.stdout.strip().splitlines()[-1]
        assert re.search(r"\d+ passed", summary) and "failed" not in summary, (doc, summary)
        if doc == "writing-a-tracker.md":
            # The conformance suite ran, not only the example's own test.
            passed = re.search(r"(\d+) passed", summary)
            assert passed and int(passed.group(1)) > 10, summary
