"""Write docs/hooks.md from src/progresskit/plugin/hookspec.py (a test checks it is current).

    python scripts/gen_hooks_doc.py

The docstrings are reStructuredText (they are read in editors and by help()); the page is
Markdown, so the few constructs they use are translated: inline literals, roles, literal
blocks and the ``:param:`` / ``:return:`` field list.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from progresskit.plugin import hookspec
from progresskit.plugin.hooks import PER_PLUGIN_HOOKS

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"

_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]+?)(?: <[^`>]+>)?`")
_FIELD = re.compile(r"^:(?:param (\w+)|(return)):\s*(.*)$")


def _role(match: re.Match[str]) -> str:
    # ":class:`~a.b.C`" shows "C"; ":func:`a.b`" shows "a.b"; "text <target>" shows text.
    shown = match.group(2).strip()
    return f"`{shown.rsplit('.', 1)[-1] if match.group(1) else shown}`"


def _markdown(docstring: str) -> str:
    out: list[str] = []
    block = field = False
    for line in inspect.cleandoc(docstring).splitlines():
        if block:
            if not line or line.startswith("    "):
                if line or out[-1] != "```":  # the blank line after "::" is not code
                    out.append(line[4:])
                continue
            while out[-1] == "":
                out.pop()
            out += ["```", ""]
            block = False
        line = _ROLE.sub(_role, line).replace("``", "`")
        if line.endswith("::"):
            out += [line[:-1], "", "```"]
            block = True
            continue
        match = _FIELD.match(line)
        if match:
            name, is_return, text = match.groups()
            line = f"- **returns**: {text}" if is_return else f"- `{name}`: {text}"
            field = True
        elif field and line.startswith("    "):
            line = "  " + line.strip()
        else:
            field = False
        out.append(line)
    if block:
        while out[-1] == "":
            out.pop()
        out.append("```")
    return "\n".join(out)


def render() -> str:
    lines = [
        "# Hook reference",
        "",
        "Generated from `src/progresskit/plugin/hookspec.py` by `scripts/gen_hooks_doc.py`; "
        "do not edit by hand.",
        "",
        _markdown(hookspec.__doc__ or ""),
        "",
    ]
    for name, function in inspect.getmembers(hookspec, inspect.isfunction):
        if not name.startswith("progresskit_"):
            continue
        opts = getattr(function, "progresskit_spec", {}) or {}
        if opts.get("firstresult"):
            how = "*firstresult: the first non-`None` answer wins*"
        elif name in PER_PLUGIN_HOOKS:
            how = "*called plugin by plugin; cannot be a hook wrapper*"
        else:
            how = "*every implementation is called*"
        signature = str(inspect.signature(function)).replace("'", "")
        lines += [
            f"## `{name}`",
            "",
            f"```python\ndef {name}{signature}\n```",
            "",
            how,
            "",
            _markdown(function.__doc__ or ""),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    DOC.write_text(render())
    sys.exit(0)
