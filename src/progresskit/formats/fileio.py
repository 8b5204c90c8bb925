"""File helpers shared by trackers and sinks: cheap change detection, the one reader of
run files, and atomic writes.

Run directories are untrusted input (docs/security.md): anyone who can write there can
put a FIFO, a device or a 1 GB file where a tracker expects a small JSON document. Every
read of a run file goes through :func:`open_regular`: it never blocks on opening, accepts
regular files only (checked on the open descriptor, so a swap after the check does not
help), and :func:`read_bytes` caps what is read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_MAX_FILE_MB",
    "MAX_FILE_ENV",
    "FileTooLargeError",
    "NotRegularFileError",
    "StatKey",
    "atomic_write_text",
    "is_racy",
    "key_of",
    "max_file_bytes",
    "open_regular",
    "parse_json",
    "read_bytes",
    "read_json",
    "stat_key",
]

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
    return key_of(st)


def key_of(st: os.stat_result) -> StatKey:
    """The :data:`StatKey` of a ``stat`` just taken (:func:`stat_key` of its file)."""
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def is_racy(keys: tuple[StatKey | None, ...], read_at_ns: int) -> bool:
    """Whether any of ``keys`` changed too close to ``read_at_ns`` for its mtime to be trusted."""
    # A loop, not any() over a generator (ruff's SIM110): a third of the cost, and this runs
    # on every query of a growing log.
    for key in keys:  # noqa: SIM110
        if key is not None and read_at_ns - key[0] < RACY_WINDOW_NS:
            return True
    return False


#: The most a run file may hold to be read whole (MiB), unless ``$PROGRESSKIT_MAX_FILE_MB``
#: says otherwise: far above any status document or trainer state, far below what would
#: exhaust a login node's memory. Logs are read from their tail instead (engine/logs.py).
DEFAULT_MAX_FILE_MB = 64
MAX_FILE_ENV = "PROGRESSKIT_MAX_FILE_MB"

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
#: Integers longer than this are read as floats (infinite beyond 1e308): no count or time a
#: tracker reads is that long, and Python refuses to make ints of more than 4,300 digits.
_MAX_INT_DIGITS = 300


class NotRegularFileError(OSError):
    """A run file that is a FIFO, a device, a socket or a directory: never read."""


class FileTooLargeError(OSError):
    """A run file larger than :func:`max_file_bytes`: not read."""


def max_file_bytes() -> int:
    """The most bytes :func:`read_bytes` reads: ``$PROGRESSKIT_MAX_FILE_MB`` MiB, else
    :data:`DEFAULT_MAX_FILE_MB`."""
    text = os.environ.get(MAX_FILE_ENV, "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_MAX_FILE_MB
    except ValueError:
        megabytes = DEFAULT_MAX_FILE_MB
    if not megabytes > 0:  # also NaN
        megabytes = DEFAULT_MAX_FILE_MB
    return int(min(megabytes, 1 << 40) * (1 << 20))


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: str, mode: int) -> NotRegularFileError:
    return NotRegularFileError(
        errno.EINVAL, f"{_kind(mode)}, not a regular file: not read", path
    )


def open_regular(path: str, st_mode: int | None = None) -> tuple[int, os.stat_result]:
    """An open descriptor of ``path`` and its ``fstat``, when it is a regular file.

    Never blocks: a FIFO or a device is refused without being opened when ``stat`` shows
    it, and opened with ``O_NONBLOCK`` and refused after ``fstat`` when it was swapped in
    since. ``st_mode``: the mode of a ``stat`` of ``path`` the caller just took (the log
    reader's change check), on which that first refusal is made without a ``stat`` of
    its own; the check of the open descriptor is made all the same. Raises ``OSError``:
    :class:`NotRegularFileError` for anything but a regular file, ``FileNotFoundError``
    and the like as ``os.open`` does. The caller closes the descriptor.
    """
    mode = os.stat(path).st_mode if st_mode is None else st_mode
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_bytes(path: str, limit: int | None = None) -> tuple[bytes, os.stat_result]:
    """The content of the regular file ``path`` and its ``fstat``, at most ``limit`` bytes
    (default :func:`max_file_bytes`).

    Raises ``OSError``: :class:`NotRegularFileError` (:func:`open_regular`),
    :class:`FileTooLargeError` for a file larger than the limit (nothing of it is read).
    """
    cap = max_file_bytes() if limit is None else limit
    fd, st = open_regular(path)
    try:
        if st.st_size > cap:
            raise _too_large(path, cap)
        chunks: list[bytes] = []
        size = 0
        while True:  # a file that grows while read is still read to the cap only
            chunk = os.read(fd, min(max(st.st_size - size, 0) + 65536, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise _too_large(path, cap)
    finally:
        os.close(fd)
    return b"".join(chunks), st


def _too_large(path: str, cap: int) -> FileTooLargeError:
    return FileTooLargeError(
        errno.EFBIG,
        f"larger than the {cap / (1 << 20):g} MiB read limit (${MAX_FILE_ENV}): not read",
        path,
    )


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def parse_json(raw: bytes | str, where: str) -> Any:
    """Parse JSON text from an untrusted file. Raises ``ValueError`` naming ``where``: for
    text that is not JSON (or not UTF-8/16/32), and for nesting too deep to parse (which
    would otherwise be a ``RecursionError``). Integers too long for a number are floats."""
    try:
        return json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # UnicodeDecodeError is one
        raise ValueError(f"{where}: not valid JSON ({_short(str(exc))})") from exc


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def read_json(path: str) -> Any:
    """Parse a JSON file (:func:`read_bytes`, :func:`parse_json`). Raises ``OSError`` or
    ``ValueError`` (with the file's name)."""
    raw, _st = read_bytes(path)
    if not raw.strip():
        raise ValueError(f"{path}: file is empty")
    return parse_json(raw, path)


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
