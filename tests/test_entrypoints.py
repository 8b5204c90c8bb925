"""The entry-point reader gives what importlib.metadata gives: for the real environment and
for fabricated installs (wheels, editable installs, egg-info, shadowed and oddly named
distributions), and it hands the layouts it does not read to importlib.metadata."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from progresskit.plugin import entrypoints
from progresskit.plugin.entrypoints import EntryPoint

GROUPS = ("progresskit", "console_scripts", "pytest11", "demo")


def _expected(group: str) -> list[EntryPoint]:
    return [
        EntryPoint(
            ep.name,
            ep.value,
            group,
            None if ep.dist is None else ep.dist.name,
            None if ep.dist is None else ep.dist.version,
        )
        for ep in md.entry_points(group=group)
    ]


def _same_as_importlib(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback must not be what answers: each layout here is one the reader reads.
    def refuse(group: str) -> list[EntryPoint]:
        raise AssertionError("fell back to importlib.metadata")

    with monkeypatch.context() as patch:
        patch.setattr(entrypoints, "_from_importlib", refuse)
        for group in GROUPS:
            assert entrypoints.entry_points(group) == _expected(group), group


def _dist(
    site: Path,
    stem: str,
    name: str,
    version: str,
    entry_points: str | None,
    *,
    suffix: str = ".dist-info",
    metadata: str = "METADATA",
    extra_headers: str = "",
) -> Path:
    info = site / f"{stem}{suffix}"
    info.mkdir(parents=True)
    (info / metadata).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra_headers}"
        "\nA description: Name: not-this\n"
    )
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)
    return info


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two site directories before the real ones on sys.path."""
    found = [tmp_path / "site_a", tmp_path / "site_b"]
    for site in reversed(found):
        site.mkdir()
        monkeypatch.syspath_prepend(str(site))
    return found


def test_the_real_environment_reads_as_importlib_metadata_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _same_as_importlib(monkeypatch)
    names = {ep.name for ep in entrypoints.entry_points("progresskit")}
    assert {"brush", "comfyui", "hf"} <= names  # the repository's plugins, installed editable


def test_fabricated_installs_read_as_importlib_metadata_reads_them(
    sites: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_a, site_b = sites
    # A wheel install, with comments, blank lines, extras, attributes and other groups.
    _dist(
        site_a,
        "Demo_Pkg-1.2",
        "Demo-Pkg",
        "1.2",
        "# generated\n[console_scripts]\ndemo = demo.cli:main\n\n"
        "[demo]\n  one = demo.one\ntwo=demo.two:attr.inner [extra]\n",
        extra_headers="Summary: a folded\n  summary line\nLicense: MIT\n",
    )
    # An editable install: the metadata on site-packages, the code anywhere else.
    _dist(site_a, "editable_demo-0.1", "editable-demo", "0.1", "[demo]\nedit = editable_demo\n")
    # No entry points at all, shadowing a later distribution of the same normalised name.
    _dist(site_a, "shadow.pkg-1.0", "shadow.pkg", "1.0", None)
    _dist(site_b, "Shadow_Pkg-2.0", "Shadow_Pkg", "2.0", "[demo]\nhidden = shadow\n")
    # The same name as a wheel in the first site: the first site's wins.
    _dist(site_b, "demo_pkg-9.9", "demo-pkg", "9.9", "[demo]\nold = demo.old\n")
    # An egg-info directory (a `setup.py develop` install), its metadata in PKG-INFO.
    _dist(
        site_b, "legacy-3.0", "legacy", "3.0", "[demo]\nlegacy = legacy.plugin\n",
        suffix=".egg-info", metadata="PKG-INFO",
    )
    _same_as_importlib(monkeypatch)
    names = [ep.name for ep in entrypoints.entry_points("demo")]
    assert "hidden" not in names and "old" not in names
    assert {"one", "two", "edit", "legacy"} <= set(names)


@pytest.mark.parametrize(
    "layout",
    ["zip", "egg", "folded name", "line without equals", "metadata file", "upper-case suffix"],
)
def test_unusual_layouts_are_left_to_importlib_metadata(
    layout: str, sites: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = sites[0]
    if layout == "zip":
        archive = site.parent / "plugins.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
            zf.writestr("zipped-1.0.dist-info/entry_points.txt", "[demo]\nzipped = zipped\n")
        monkeypatch.syspath_prepend(str(archive))
    elif layout == "egg":
        egg = site.parent / "old-1.0-py3.11.egg"
        (egg / "EGG-INFO").mkdir(parents=True)
        (egg / "EGG-INFO" / "PKG-INFO").write_text("Name: old\nVersion: 1.0\n")
        (egg / "EGG-INFO" / "entry_points.txt").write_text("[demo]\negged = old\n")
        monkeypatch.syspath_prepend(str(egg))
    elif layout == "folded name":
        _dist(site, "folded-1.0", "folded", "1.0", "[demo]\nf = folded\n")
        meta = site / "folded-1.0.dist-info" / "METADATA"
        meta.write_text("Name: folded\n  -continued\nVersion: 1.0\n")
    elif layout == "line without equals":
        _dist(site, "bad-1.0", "bad", "1.0", "[other]\nnot an entry point\n")
    elif layout == "metadata file":
        (site / "single-1.0.egg-info").write_text("Name: single\nVersion: 1.0\n")
    else:
        _dist(site, "Upper-1.0", "Upper", "1.0", "[demo]\nup = upper\n", suffix=".DIST-INFO")
    asked: list[str] = []
    real = entrypoints._from_importlib

    def spy(group: str) -> list[EntryPoint]:
        asked.append(group)
        return real(group)

    monkeypatch.setattr(entrypoints, "_from_importlib", spy)
    try:
        expected = _expected("demo")
    except Exception as exc:  # importlib.metadata refuses the file: so does the reader
        with pytest.raises(type(exc)):
            entrypoints.entry_points("demo")
    else:
        assert entrypoints.entry_points("demo") == expected
    assert asked == ["demo"]


def test_load_resolves_module_and_attributes_as_importlib_metadata_does(
    sites: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (sites[0] / "pk_ep_demo.py").write_text("class Outer:\n    class Inner:\n        pass\n")
    monkeypatch.delitem(sys.modules, "pk_ep_demo", raising=False)
    for value in ("pk_ep_demo", "pk_ep_demo:Outer", "pk_ep_demo : Outer.Inner [extra]"):
        ours = EntryPoint("x", value, "demo", None, None).load()
        theirs = md.EntryPoint("x", value, "demo").load()
        assert ours is theirs, value
    with pytest.raises(ValueError, match="'pk ep' is not module"):
        EntryPoint("x", "pk ep", "demo", None, None).load()


def test_the_command_line_does_not_import_importlib_metadata(tmp_path: Path) -> None:
    # The point of the reader: `progresskit status` reads plugins without it.
    code = (
        "import sys\n"
        "from progresskit.plugin.manager import get_plugin_manager\n"
        "pm = get_plugin_manager()\n"
        "assert pm.has_plugin('comfyui'), 'entry points not read'\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
