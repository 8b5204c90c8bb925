"""The functions behind progresskit's pytest fixtures, usable without pytest too."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from progresskit.errors import PluginError
from progresskit.plugin.config import CONFIG_FILENAME
from progresskit.plugin.manager import (
    CORE_PLUGIN,
    ENTRY_POINT_GROUP,
    PluginManager,
    get_plugin_manager,
    plugin_names,
)

__all__ = [
    "CliResult",
    "backdate_tree",
    "imports_outside_public_api",
    "installed_plugin_names",
    "make_run_dir",
    "plugin_manager",
    "run_cli",
    "write_config",
]

#: File content for :func:`make_run_dir`: text, bytes, or ``None`` for a directory.
FileContent = str | bytes | None


def backdate_tree(path: str | os.PathLike[str], age: float) -> None:
    """Set the mtime of ``path`` and everything below it to ``age`` seconds ago.

    Trackers do not cache what they read from files changed within the last two seconds
    (their timestamps cannot be trusted yet), so a test of caching needs older files.
    """
    when = time.time() - age
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


def make_run_dir(
    path: str | os.PathLike[str],
    files: Mapping[str, FileContent] | None = None,
    *,
    age: float | None = None,
) -> Path:
    """Create the directory ``path`` holding ``files`` (relative path -> content).

    A mapping value of ``None`` makes a directory; parents are created as needed;
    ``dict`` and ``list`` values are written as JSON. With ``age``, every entry's mtime is
    set to that many seconds ago (see :func:`backdate_tree`).
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in (files or {}).items():
        target = root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(f"make_run_dir: {relative!r} must be a path inside the run")
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, (dict, list)):
            target.write_text(json.dumps(content), encoding="utf-8")
        else:
            target.write_text(content, encoding="utf-8")
    if age is not None:
        backdate_tree(root, age)
    return root


def write_config(directory: str | os.PathLike[str], values: Mapping[str, Any]) -> Path:
    """Write ``values`` as the ``progresskit.yaml`` of ``directory``; returns its path."""
    path = Path(directory) / CONFIG_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False), encoding="utf-8")
    return path


def imports_outside_public_api(
    package_dir: str | os.PathLike[str], forbidden: Iterable[str] = ()
) -> list[str]:
    """What a plugin distribution's modules import that a plugin must not, one line each.

    A plugin uses ``from progresskit import NAME`` for names of ``progresskit.__all__`` only
    (never a submodule of progresskit, never a private name), and none of the ``forbidden``
    libraries (the system it reads, which its users need not install). The import-linter
    contract says the same for the first-party plugins; this check runs in a third party's
    own tests. Empty when the package is clean.
    """
    import progresskit

    public = set(progresskit.__all__)
    banned = tuple(forbidden)
    found = []
    for source in sorted(Path(package_dir).rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
                if node.module == "progresskit":
                    private = sorted({a.name for a in node.names} - public)
                    if private:
                        found.append(f"{source.name}: imports private names {private}")
            else:
                continue
            for module in modules:
                if module != "progresskit" and module.split(".")[0] == "progresskit":
                    found.append(f"{source.name}: imports {module}: only progresskit's public API")
                if any(module == b or module.startswith(b + ".") for b in banned):
                    found.append(f"{source.name}: imports {module}")
    return found


def installed_plugin_names() -> list[str]:
    """Names of every plugin that can be chosen: the builtins but the core, and every
    plugin installed in the ``progresskit`` entry-point group."""
    return sorted(set(plugin_names()) - {CORE_PLUGIN})


def plugin_manager(
    only: Iterable[str] | None = None,
    extra_plugins: Sequence[tuple[str, object]] = (),
) -> PluginManager:
    """A fresh plugin manager with only the chosen plugins loaded.

    ``only`` names builtin or installed entry-point plugins to load (``None``: every one;
    ``()``: none but the core); ``extra_plugins`` are (name, module or object) pairs
    registered after them, e.g. a plugin under test that is not installed.
    """
    installed = installed_plugin_names()
    clashes = sorted({name for name, _ in extra_plugins} & set(installed))
    if clashes:
        raise PluginError(
            f"extra plugin name(s) {clashes} are taken by builtin or installed plugins; "
            f"register the object under another name"
        )
    if only is None:
        disabled: list[str] = []
    else:
        wanted = set(only)
        missing = sorted(wanted - set(installed))
        if missing:
            raise PluginError(
                f"plugin(s) {missing} are not installed (neither builtin nor in the "
                f"'{ENTRY_POINT_GROUP}' entry-point group; installed: {installed}); install "
                f"the distribution (pip install -e .) or pass the module through extra_plugins"
            )
        disabled = [name for name in installed if name not in wanted]
    return get_plugin_manager(disabled=disabled, extra_plugins=extra_plugins)


@attrs.frozen
class CliResult:
    """What one ``progresskit`` command did."""

    args: tuple[str, ...]
    #: The exit code (docs/cli.md: 0 healthy, 1 unhealthy runs, 2 usage or target error).
    ret: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The parsed standard output; an ``AssertionError`` showing both streams if it is
        not JSON (so a failing test shows what the command said instead)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"progresskit {' '.join(self.args)} (exit code {self.ret}) did not print JSON "
                f"({exc})\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
            ) from None


@contextlib.contextmanager
def _environment(
    cwd: str | os.PathLike[str] | None, env: Mapping[str, str] | None
) -> Iterator[None]:
    old_cwd = os.getcwd()
    saved = {key: os.environ.get(key) for key in env or {}}
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    in_process: bool = True,
    timeout: float = 120.0,
) -> CliResult:
    """Run ``progresskit ARGS...`` and capture its exit code and output.

    In-process (the default) calls :func:`progresskit.cli.main.main` with redirected streams:
    fast, and coverage and debuggers see it; it changes the working directory and
    ``env`` for the duration of the call, so it is not thread-safe. ``in_process=False``
    runs ``python -m progresskit`` in a subprocess of this interpreter: what a user's
    shell sees, including plugin loading from a clean interpreter.
    """
    argv = tuple(str(a) for a in args)
    if not in_process:
        completed = subprocess.run(
            [sys.executable, "-m", "progresskit", *argv],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            timeout=timeout,
            check=False,
        )
        return CliResult(argv, completed.returncode, completed.stdout, completed.stderr)
    from progresskit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(cwd, {"COLUMNS": "200", **(env or {})}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse exits on a usage error or --help
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return CliResult(argv, code, out.getvalue(), err.getvalue())
