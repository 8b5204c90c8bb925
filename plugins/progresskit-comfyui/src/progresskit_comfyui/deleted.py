"""Prompts this process deleted from a server's queue.

ComfyUI keeps no trace of a deleted pending prompt (never in its history), so a later look
at the server cannot tell a deletion from an unknown id; the cancel that deleted it can.
Kept per process (``progresskit serve`` cancels and looks again in one process), bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["remember_deleted", "was_deleted"]

#: Deletions remembered (the oldest forgotten first).
MAX_REMEMBERED = 10000

_deleted: OrderedDict[tuple[str, str], None] = OrderedDict()
_lock = threading.Lock()


def remember_deleted(server: str, prompt_id: str) -> None:
    with _lock:
        _deleted[(server, prompt_id)] = None
        _deleted.move_to_end((server, prompt_id))
        while len(_deleted) > MAX_REMEMBERED:
            _deleted.popitem(last=False)


def was_deleted(server: str, prompt_id: str) -> bool:
    with _lock:
        return (server, prompt_id) in _deleted
