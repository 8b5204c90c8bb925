"""File helpers shared by trackers and sinks: cheap change detection and atomic writes."""

from __future__ import annotations

import contextlib
import json
import os

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StatKey", "atomic_write_text", "is_racy", "read_json", "stat_key"]

#: (mtime_ns, size, inode) of a file, or None when it does not exist.
StatKey = tuple[int, int, int]

#: A file changed within this many seconds of being read may change again without its
#: mtime moving (filesystem timestamps are coarse: a jiffy on ext4, 2 s on FAT), so what
#: was read from it is not cached. Same reasoning as git's "racily clean" entries.
RACY_WINDOW_NS = 2_000_000_000


def stat_key(path: str) -> StatKey | None:
    """What identifies ``path``'s current content cheaply, or ``None`` if it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def is_racy(keys: tuple[StatKey | None, ...], read_at_ns: int) -> bool:
    """Whether any of ``keys`` changed too close to ``read_at_ns`` for its mtime to be trusted."""
    return any(k is not None and read_at_ns - k[0] < RACY_WINDOW_NS for k in keys)


def read_json(path: str) -> Any:
    """Parse a JSON file. Raises ``OSError`` or ``ValueError`` (with the file's name)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        raise ValueError(f"{path}: file is empty")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` so that a concurrent reader sees the old or the new
    content, never a mixture: temp file in the same directory, flush, fsync, ``os.replace``.
    """
    import tempfile  # with the first write, not at import: the producer side's import cost

    directory, name = os.path.split(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
