"""Write docs/hooks.md from src/progresskit/hookspec.py (a test checks it is current).

    python scripts/gen_hooks_doc.py
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from progresskit.plugin import hookspec

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def render() -> str:
    lines = [
        "# Hook reference",
        "",
        "Generated from `src/progresskit/hookspec.py` by `scripts/gen_hooks_doc.py`; "
        "do not edit by hand.",
        "",
        inspect.cleandoc(hookspec.__doc__ or ""),
        "",
    ]
    for name, function in inspect.getmembers(hookspec, inspect.isfunction):
        if not name.startswith("progresskit_"):
            continue
        opts = getattr(function, "progresskit_spec", {}) or {}
        flags = [flag for flag in ("firstresult", "historic") if opts.get(flag)]
        signature = str(inspect.signature(function)).replace("'", "")
        lines += [
            f"## `{name}`",
            "",
            f"```python\ndef {name}{signature}\n```",
            "",
            f"*{', '.join(flags)}*" if flags else "*all results are collected*",
            "",
            inspect.cleandoc(function.__doc__ or ""),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    DOC.write_text(render())
    sys.exit(0)
