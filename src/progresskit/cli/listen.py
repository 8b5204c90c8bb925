"""Receive emitters' events on a Unix socket and append them to an event file.

The receiving end of the event socket: ``progresskit listen --socket PATH --out FILE``.

Emitters (:class:`~progresskit.producer.emitter.EventEmitter`, or the seed's
``TrainingEventEmitter``) connect to a Unix socket and stream JSONL events.
:class:`EventListener` accepts any number of connections on one thread (a selector, no
thread per client), reassembles each connection's lines and appends complete lines to the
event file with the same ``O_APPEND`` single-write primitive the emitters use, so listener
and direct writers can share one file. A connection that ends in the middle of a line has
that fragment dropped: an emitter whose send failed part-way writes the whole event to the
file instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import selectors
import signal
import socket
import stat
import sys
from types import FrameType

from progresskit.errors import ProgresskitError
from progresskit.formats.events import ENV_EVENT_FILE, ENV_EVENT_SOCKET
from progresskit.producer.emitter import append_bytes

__all__ = ["EventListener", "ListenError", "add_listen_arguments", "run_listen"]

logger = logging.getLogger(__name__)

#: A connection holding more than this without a newline is not sending events; it is cut.
MAX_LINE_BYTES = 1 << 20
_RECV_BYTES = 1 << 16


class ListenError(ProgresskitError):
    """The listener cannot start: the socket path or the event file is unusable."""


class EventListener:
    """Accepts emitter connections on ``socket_path``; appends their events to ``out_path``.

    Use :meth:`start` (bind), then :meth:`serve_forever` until :meth:`stop` is called from
    another thread or a signal handler; or use it as a context manager. :meth:`close`
    removes the socket file.
    """

    def __init__(self, socket_path: str | os.PathLike[str], out_path: str | os.PathLike[str]):
        self.socket_path = os.fspath(socket_path)
        self.out_path = os.fspath(out_path)
        #: Complete event lines appended to the file.
        self.events_written = 0
        #: Connections accepted since the start.
        self.connections = 0
        #: Fragments dropped: a connection closed mid-line, or a line over MAX_LINE_BYTES.
        self.fragments_dropped = 0
        #: Appends to the event file that failed (logged; the listener keeps going).
        self.write_failures = 0
        self._server: socket.socket | None = None
        self._inode: int | None = None
        self._selector = selectors.DefaultSelector()
        self._buffers: dict[socket.socket, bytearray] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._stopping = False
        self._wrote_since_failure = False

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Check the event file can be appended to, then bind and listen on the socket."""
        try:
            append_bytes(self.out_path, b"")
        except OSError as exc:
            raise ListenError(
                f"cannot append to event file {self.out_path}: {exc.strerror or exc}"
            ) from exc
        self._clear_stale_socket()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(self.socket_path)
            server.listen(64)
        except OSError as exc:
            server.close()
            problem = exc.strerror or exc
            raise ListenError(f"cannot listen on {self.socket_path}: {problem}") from exc
        server.setblocking(False)
        self._server = server
        self._inode = os.stat(self.socket_path).st_ino
        self._selector.register(server, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    def _clear_stale_socket(self) -> None:
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ListenError(f"cannot use {self.socket_path}: {exc.strerror or exc}") from exc
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(
                f"{self.socket_path} exists and is not a socket; refusing to replace it"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except OSError:
            # Left behind by a listener that died: nobody accepts on it.
            os.unlink(self.socket_path)
            return
        finally:
            probe.close()
        raise ListenError(f"another listener already accepts connections on {self.socket_path}")

    def serve_forever(self) -> None:
        """Accept and relay events until :meth:`stop`. Complete lines are never lost."""
        if self._server is None:
            self.start()
        while not self._stopping:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._server:
                    self._accept()
                elif sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                elif isinstance(sock, socket.socket):
                    self._receive(sock)

    def stop(self) -> None:
        """Make :meth:`serve_forever` return; safe from a signal handler or another thread."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def close(self) -> None:
        """Relay what is already sent, close every connection (dropping unfinished lines)
        and remove the socket file."""
        self._drain()
        for conn in list(self._buffers):
            self._disconnect(conn)
        if self._server is not None:
            self._selector.unregister(self._server)
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                # Only our own socket file: a successor may already have bound the path.
                if os.stat(self.socket_path).st_ino == self._inode:
                    os.unlink(self.socket_path)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._wake_r)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> EventListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Take in what emitters already sent: an event whose send succeeded is relayed,
        even from a connection still waiting in the accept backlog."""
        if self._server is not None:
            while self._accept():
                pass
        for conn in list(self._buffers):
            while conn in self._buffers and self._receive(conn):
                pass

    def _accept(self) -> bool:
        assert self._server is not None
        try:
            conn, _ = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return False
        conn.setblocking(False)
        self._buffers[conn] = bytearray()
        self._selector.register(conn, selectors.EVENT_READ)
        self.connections += 1
        return True

    def _receive(self, conn: socket.socket) -> bool:
        """Read once from ``conn``; whether anything (data or end of stream) was read."""
        try:
            data = conn.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            logger.warning("event connection failed: %s", exc)
            data = b""
        if not data:
            self._disconnect(conn)
            return True
        buffer = self._buffers[conn]
        buffer += data
        end = buffer.rfind(b"\n")
        if end >= 0:
            self._write(bytes(buffer[: end + 1]))
            del buffer[: end + 1]
        if len(buffer) > MAX_LINE_BYTES:
            logger.warning(
                "event connection sent %d bytes without a newline: not JSONL; disconnected",
                len(buffer),
            )
            buffer.clear()
            self.fragments_dropped += 1
            self._disconnect(conn)
        return True

    def _write(self, lines: bytes) -> None:
        try:
            append_bytes(self.out_path, lines)
        except OSError as exc:
            if not self.write_failures or self._wrote_since_failure:
                # Once per streak: a full disk must not log one error per received batch.
                logger.error("cannot append events to %s: %s", self.out_path, exc.strerror or exc)
            self.write_failures += 1
            self._wrote_since_failure = False
            return
        self._wrote_since_failure = True
        self.events_written += lines.count(b"\n")

    def _disconnect(self, conn: socket.socket) -> None:
        buffer = self._buffers.pop(conn, None)
        if buffer:
            self.fragments_dropped += 1
            logger.warning(
                "event connection closed in the middle of a line; %d bytes dropped", len(buffer)
            )
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()


# -- command line ---------------------------------------------------------------------------


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``progresskit listen``."""
    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=os.environ.get(ENV_EVENT_SOCKET),
        help=f"Unix socket to accept emitters on (default: ${ENV_EVENT_SOCKET})",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=os.environ.get(ENV_EVENT_FILE),
        help=f"event file to append to, e.g. WORK_DIR/events.jsonl (default: ${ENV_EVENT_FILE})",
    )


def run_listen(args: argparse.Namespace) -> int:
    """``progresskit listen``: relay events until SIGINT or SIGTERM; exit code 0."""
    if not args.socket or not args.out:
        missing = " and ".join(
            f"{flag} (or ${env})"
            for flag, env, value in (
                ("--socket", ENV_EVENT_SOCKET, args.socket),
                ("--out", ENV_EVENT_FILE, args.out),
            )
            if not value
        )
        raise ListenError(f"listen: missing {missing}")
    listener = EventListener(args.socket, args.out)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        listener.stop()

    listener.start()
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(
            f"progresskit: listening on {listener.socket_path}, appending events to "
            f"{listener.out_path}",
            file=sys.stderr,
            flush=True,
        )
        listener.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    print(
        f"progresskit: stopped; {listener.events_written} events from "
        f"{listener.connections} connections written to {listener.out_path}",
        file=sys.stderr,
        flush=True,
    )
    return 0
