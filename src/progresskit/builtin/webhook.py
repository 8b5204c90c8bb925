"""The ``webhook`` sink: each change POSTed as JSON, through an on-disk spool that loses nothing.

``emit`` writes every event to the spool directory (one file per event, written atomically)
and returns; a background thread POSTs the spooled events oldest first, one at a time so a
receiver sees each run's changes in order, and deletes each file once the endpoint answered
2xx. A failed delivery is retried with exponential backoff and jitter; a slow or dead
endpoint therefore delays only this thread, never tracking or the other sinks. Events left
when the process ends (closed, killed, crashed) are replayed by the next sink that opens the
same spool. The spool is bounded: on overflow the oldest event that a newer event of the
same run supersedes is dropped first, and every dropped event is logged and recorded in
``overflow.jsonl`` in the spool. Every loss (overflow, a full disk, an event that cannot be
encoded) is also counted in the spool's drop record (:mod:`progresskit.builtin.droprecord`),
which ``watch`` and ``serve``'s ``/metrics`` report. One bad event never costs another run
its events. Each exchange with the endpoint is bounded as a whole (``exchange_timeout``) and
so is the answer read (``max_response_bytes``): a trickling or endless answer is cut, and
the stall is logged as a warning. Wire format and verification: docs/watch.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from progresskit import __version__
from progresskit.builtin.droprecord import DropRecorder
from progresskit.errors import ConfigError
from progresskit.formats import jsonio
from progresskit.formats.fileio import atomic_write_text
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.sink import SinkType

if TYPE_CHECKING:
    # Imported where a sink uses them: every command loads this plugin, few configure it.
    import http.client

    from progresskit.formats.change import Change

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Progresskit-Signature"
EVENT_ID_HEADER = "X-Progresskit-Event-Id"
#: Headers whose values are credentials: they come from ``headers_env``, never the YAML.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Answers that say this payload will never be accepted: the event is set aside in
#: ``rejected/``. Every other failure (401, 404, 5xx, timeouts...) is a configuration or
#: availability problem that someone can fix, so the event is kept and retried.
_REJECTED = frozenset({400, 413, 415, 422})
_SUFFIX = ".json"
#: Consecutive failed attempts of one event before the outage is logged as a warning.
_WARN_AFTER_ATTEMPTS = 3


class _Stalled(Exception):
    """The endpoint did not complete the exchange within ``exchange_timeout``."""


def default_spool_root() -> str:
    """The directory holding the default spools, one per URL."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "progresskit", "webhook")


def _default_spool_dir(url: str) -> str:
    # hashlib and hmac (OpenSSL's start-up) are loaded by a webhook, not by every command.
    import hashlib

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return os.path.join(default_spool_root(), digest)


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (the signature header as received) signs ``body`` with ``secret``."""
    import hmac

    return header is not None and hmac.compare_digest(sign(secret, body), header)


@attrs.define
class _Pending:
    seq: int
    event_id: str
    run: str
    path: str


class WebhookSink:
    """POSTs every change to ``url``; see the module docstring for the delivery guarantees."""

    def __init__(self, options: Mapping[str, Any]):
        self.url: str = options["url"]
        parsed = _check_url(self.url)
        self._secure = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port or (443 if self._secure else 80)
        self._target = urllib.parse.urlunsplit(("", "", parsed.path or "/", parsed.query, ""))
        self.timeout = float(options["timeout"])
        self.exchange_timeout = float(options["exchange_timeout"])
        self.max_response_bytes = int(options["max_response_bytes"])
        self._headers = _headers(options)
        self._secret = _secret(options.get("secret_env"))
        self.max_events = int(options["spool_max_events"])
        self.retry_initial = float(options["retry_initial"])
        self.retry_max = float(options["retry_max"])
        if self.retry_max < self.retry_initial:
            raise ConfigError(
                f"retry_max ({self.retry_max:g}) must be >= retry_initial "
                f"({self.retry_initial:g})"
            )
        self.flush_timeout = float(options["flush_timeout"])
        self.heartbeats = bool(options["heartbeats"])
        if options["startup_check"]:
            self._check_reachable()
        self.spool_dir = os.path.abspath(
            os.path.expanduser(options.get("spool_dir") or _default_spool_dir(self.url))
        )
        #: Events delivered (2xx), set aside as rejected, and dropped on spool overflow.
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0
        self._lock_file = self._open_spool()
        #: Every event lost, recorded where it survives (docs/watch.md).
        self.drops = DropRecorder(self.spool_dir)
        self._cond = threading.Condition()
        self._queue: OrderedDict[int, _Pending] = OrderedDict()
        self._in_flight: int | None = None
        self._last_seq = 0
        self._closing = False
        self._deadline = 0.0
        self._connection: http.client.HTTPConnection | None = None
        self._failing_since: float | None = None
        self._stalled = False
        self._load_spool()
        self._thread = threading.Thread(
            target=self._deliver_loop, name=f"progresskit-webhook {self.url}", daemon=True
        )
        self._thread.start()

    # -- set-up ---------------------------------------------------------------------------

    def _check_reachable(self) -> None:
        """Connect (and, for https, shake hands): a wrong host, port or certificate is a
        start-up error. No request is sent: a probe would be an event the receiver sees."""
        import socket
        import ssl

        try:
            with socket.create_connection((self._host, self._port), timeout=self.timeout) as s:
                if self._secure:
                    ssl.create_default_context().wrap_socket(s, server_hostname=self._host).close()
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConfigError(
                f"webhook url {self.url} is unreachable at start-up: {reason} (set "
                "'startup_check: false' to start anyway and keep events spooled until it "
                "answers)"
            ) from exc

    def _open_spool(self) -> IO[str]:
        try:
            os.makedirs(os.path.join(self.spool_dir, "rejected"), exist_ok=True)
            lock = open(os.path.join(self.spool_dir, ".lock"), "a+", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"webhook spool_dir {self.spool_dir} is not usable: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise ConfigError(
                f"webhook spool_dir {self.spool_dir} is in use by {holder}; give each "
                "webhook sink its own spool_dir"
            ) from exc
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        return lock

    def _load_spool(self) -> None:
        """Take over what an earlier process left: pending events, in order."""
        names = sorted(os.listdir(self.spool_dir))
        for name in names:
            path = os.path.join(self.spool_dir, name)
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):  # a write cut short: never acknowledged
                    os.unlink(path)
                continue
            if not name.endswith(_SUFFIX) or name in ("overflow.jsonl", "dropped.json"):
                continue
            try:
                seq_text, event_id = name[: -len(_SUFFIX)].split("-", 1)
                with open(path, "rb") as fh:
                    run = str(json.loads(fh.read())["run"]["config"])
                seq = int(seq_text)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("webhook spool: %s is not a spooled event (%s); moved to rejected/",
                          path, exc)
                self._set_aside(path)
                continue
            self._queue[seq] = _Pending(seq, event_id, run, path)
            self._last_seq = max(self._last_seq, seq)
        if self._queue:
            log.info("webhook %s: replaying %d spooled event(s)", self.url, len(self._queue))

    # -- the sink API ---------------------------------------------------------------------

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        from progresskit.formats.change import Change

        self.emit_changes([Change("snapshot", run) for run in statuses])

    def emit_changes(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.kind == "heartbeat" and not self.heartbeats:
                continue
            try:
                self._spool(change)
            except Exception as exc:  # one run's bad value must not cost the others theirs
                self._lost(change.id, change.run.config, f"cannot encode: {exc!r}"[:300])

    def close(self) -> None:
        """Deliver what can be delivered within ``flush_timeout``; the rest stays spooled."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.flush_timeout
            self._cond.notify_all()
        self._thread.join(self.flush_timeout)
        if self._thread.is_alive():
            # A request still hangs on a slow endpoint: cut it, its event stays spooled.
            connection = self._connection
            if connection is not None and connection.sock is not None:
                import socket

                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
            self._thread.join(1.0)
        with self._cond:
            left = len(self._queue)
        if left:
            log.warning("webhook %s: %d event(s) not delivered yet stay in %s for the next "
                        "start", self.url, left, self.spool_dir)
        if self._connection is not None:
            self._connection.close()
        if self.drops.count:
            record = self.drops.snapshot()
            log.warning("webhook %s: %d event(s) lost in all (first %s of %s, last %s of %s); "
                        "recorded in %s", self.url, record["count"], record["first"]["event_id"],
                        record["first"]["run"], record["last"]["event_id"], record["last"]["run"],
                        self.drops.path)
        self.drops.close()
        self._lock_file.close()

    @property
    def pending(self) -> int:
        """Events spooled and not delivered yet."""
        with self._cond:
            return len(self._queue)

    # -- spooling -------------------------------------------------------------------------

    def _spool(self, change: Change) -> None:
        with self._cond:
            # Sequence numbers order the spool and the receiver's view across restarts: a
            # nanosecond clock, kept strictly increasing.
            seq = max(time.time_ns(), self._last_seq + 1)
            self._last_seq = seq
        from progresskit.formats.change import change_document

        body = jsonio.dumps({**change_document(change), "sequence": seq}, sort_keys=True)
        path = os.path.join(self.spool_dir, f"{seq:020d}-{change.id}{_SUFFIX}")
        with self._cond:
            if len(self._queue) >= self.max_events:
                self._overflow(change.run.config)
        try:
            atomic_write_text(path, body)
        except OSError as exc:
            # Disk full or spool gone: this event cannot be kept, so it is reported lost.
            self._lost(change.id, change.run.config, f"cannot spool: {exc.strerror or exc}")
            return
        with self._cond:
            self._queue[seq] = _Pending(seq, change.id, change.run.config, path)
            self._cond.notify_all()

    def _lost(self, event_id: str, run: str, why: str) -> None:
        self.dropped += 1
        self.drops.record(event_id, run, why)
        log.error("webhook %s: event %s of %s is lost (%s); %d lost so far, recorded in %s",
                  self.url, event_id, run, why, self.drops.count, self.drops.path)

    def _overflow(self, incoming_run: str) -> None:
        """Make room for one event (lock held): drop the oldest superseded one, else the
        oldest of all; either way the loss is logged and recorded."""
        newest: dict[str, int] = {}
        for item in self._queue.values():
            newest[item.run] = item.seq
        victim = None
        for item in self._queue.values():
            if item.seq == self._in_flight:
                continue
            if item.run == incoming_run or newest[item.run] != item.seq:
                victim, why = item, "superseded by a newer event of the same run"
                break
        if victim is None:
            others = [i for i in self._queue.values() if i.seq != self._in_flight]
            if not others:  # only the event being sent: it leaves the spool in a moment
                return
            victim, why = others[0], "oldest event"
        del self._queue[victim.seq]
        with contextlib.suppress(OSError):
            os.unlink(victim.path)
        self.dropped += 1
        self.drops.record(victim.event_id, victim.run, f"spool full: {why}")
        record = {"at": time.time(), "event_id": victim.event_id, "run": victim.run,
                  "sequence": victim.seq, "why": why, "spool_max_events": self.max_events}
        try:
            with open(os.path.join(self.spool_dir, "overflow.jsonl"), "a", encoding="utf-8") as fh:
                fh.write(jsonio.dumps(record) + "\n")
        except OSError as exc:
            log.error("webhook spool: cannot record overflow: %s", exc.strerror or exc)
        log.warning(
            "webhook %s: spool full (%d events): dropped event %s of %s (%s); %d dropped so far",
            self.url, self.max_events, victim.event_id, victim.run, why, self.dropped,
        )

    def _set_aside(self, path: str) -> None:
        try:
            os.replace(path, os.path.join(self.spool_dir, "rejected", os.path.basename(path)))
        except OSError as exc:
            log.error("webhook spool: cannot move %s to rejected/: %s", path, exc.strerror or exc)

    # -- delivery -------------------------------------------------------------------------

    def _deliver_loop(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or (self._closing and time.monotonic() >= self._deadline):
                    return
                item = next(iter(self._queue.values()))
                self._in_flight = item.seq
            attempt += 1
            outcome, detail, retry_after = self._post(item, attempt)
            with self._cond:
                self._in_flight = None
                if outcome != "retry":
                    self._queue.pop(item.seq, None)
            if outcome == "delivered":
                attempt = 0
                self._stalled = False
                self.delivered += 1
                with contextlib.suppress(OSError):
                    os.unlink(item.path)
                if self._failing_since is not None:
                    log.warning("webhook %s: delivering again after %.0fs of failures",
                                self.url, time.monotonic() - self._failing_since)
                    self._failing_since = None
                continue
            if outcome == "rejected":
                attempt = 0
                self.rejected += 1
                log.error("webhook %s rejected event %s of %s (%s); kept in %s/rejected/",
                          self.url, item.event_id, item.run, detail, self.spool_dir)
                self._set_aside(item.path)
                continue
            if outcome == "gone":
                attempt = 0
                continue
            log.debug("webhook %s: attempt %d of event %s failed: %s",
                      self.url, attempt, item.event_id, detail)
            if attempt == _WARN_AFTER_ATTEMPTS:
                # One failure in a while is routine; an event that keeps failing is news.
                self._failing_since = time.monotonic()
                log.warning("webhook %s: delivery keeps failing (%s); retrying with backoff, "
                            "events are kept in %s", self.url, detail, self.spool_dir)
            self._back_off(attempt, retry_after)

    def _back_off(self, attempt: int, retry_after: float | None) -> None:
        ceiling = min(self.retry_max, self.retry_initial * 2 ** min(attempt - 1, 62))
        # "Equal jitter": at least half the backoff, so retries spread out without ever
        # hammering a recovering endpoint.
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        with self._cond:
            end = time.monotonic() + delay
            while True:
                if self._closing:
                    end = min(end, self._deadline)
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _post(self, item: _Pending, attempt: int) -> tuple[str, str, float | None]:
        import http.client

        try:
            with open(item.path, "rb") as fh:
                body = fh.read()
        except FileNotFoundError:
            return "gone", "dropped on overflow", None
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": f"progresskit/{__version__}",
            EVENT_ID_HEADER: item.event_id,
            "Idempotency-Key": item.event_id,
            "X-Progresskit-Attempt": str(attempt),
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        try:
            response, oversized = self._exchange(body, headers)
        except _Stalled as exc:
            if not self._stalled:
                self._stalled = True  # once per stall: the retries say nothing new
                log.warning("webhook %s: delivery stalled: %s; the event stays spooled and "
                            "is retried", self.url, exc)
            return "retry", str(exc), None
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            return "retry", f"{type(exc).__name__}: {exc}", None
        except Exception as exc:  # a bug must not end deliveries: the event stays spooled
            log.exception("webhook %s: unexpected error delivering %s", self.url, item.event_id)
            self._drop_connection()
            return "retry", f"{type(exc).__name__}: {exc}", None
        if response.will_close or oversized:
            self._drop_connection()
        code = response.status
        if 200 <= code < 300:
            return "delivered", str(code), None
        detail = f"HTTP {code} {response.reason}"
        if code in _REJECTED:
            return "rejected", detail, None
        return "retry", detail, _retry_after(response.getheader("Retry-After"))

    def _exchange(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[http.client.HTTPResponse, bool]:
        """One request and its answer, within ``exchange_timeout`` in all, reading at most
        ``max_response_bytes`` of the answer's body; whether the body was longer.

        ``timeout`` bounds each read, not their sum: an endpoint sending a byte a second
        never trips it. A watchdog cuts the connection when the whole exchange is late."""
        import socket

        connection = self._connect()
        cut = threading.Event()

        def watchdog() -> None:
            cut.set()
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        stalled = f"no complete answer within {self.exchange_timeout:g}s (exchange_timeout)"
        timer = threading.Timer(self.exchange_timeout, watchdog)
        timer.daemon = True
        timer.start()
        try:
            connection.request("POST", self._target, body=body, headers=dict(headers))
            response = connection.getresponse()
            answer = response.read(self.max_response_bytes + 1)
        except Exception:
            if cut.is_set():
                self._drop_connection()
                raise _Stalled(stalled) from None
            raise
        finally:
            timer.cancel()
        if cut.is_set():
            self._drop_connection()
            raise _Stalled(stalled)
        return response, len(answer) > self.max_response_bytes

    def _connect(self) -> http.client.HTTPConnection:
        import http.client

        if self._connection is None:
            if self._secure:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for webhooks, and the backoff applies anyway


def _check_url(url: str) -> urllib.parse.SplitResult:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        got = repr(parsed.scheme) if parsed.scheme else "no scheme"
        raise ConfigError(f"webhook url {url!r}: scheme must be http or https, got {got}")
    if not parsed.hostname:
        raise ConfigError(f"webhook url {url!r}: no host name")
    if parsed.username or parsed.password:
        raise ConfigError(f"webhook url {url!r}: credentials in the URL would live in the "
                          "YAML; put them in an environment variable named by headers_env")
    try:
        parsed.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError as exc:
        raise ConfigError(f"webhook url {url!r}: {exc}") from exc
    return parsed


def _env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise ConfigError(f"environment variable {name} (named by {what}) {state}")
    return value


def _headers(options: Mapping[str, Any]) -> dict[str, str]:
    headers = dict(options["headers"])
    for name, variable in options["headers_env"].items():
        headers[name] = _env(variable, f"headers_env.{name}")
    for name, value in headers.items():
        # http.client would refuse these at every delivery; better said once, now.
        if not name or any(c in name for c in " :\r\n") or "\r" in value or "\n" in value:
            raise ConfigError(f"header {name!r}: names cannot hold spaces, ':' or line "
                              "breaks, values cannot hold line breaks")
    return headers


def _secret(variable: str | None) -> bytes | None:
    return None if variable is None else _env(variable, "secret_env").encode()


def _url_option(value: str | None) -> None:
    if value is not None:
        _check_url(value)


def _string_mapping(value: Any) -> None:
    ensure(
        all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
        "expects a mapping of strings to strings",
    )


def _plain_headers(value: Any) -> None:
    _string_mapping(value)
    secret = sorted(k for k in value if k.lower() in _SECRET_HEADERS)
    ensure(not secret, f"{', '.join(secret)} holds a credential: name the environment "
           "variable that holds it in headers_env instead")


def _options(schema: ConfigSchema) -> None:
    schema.add("url", (str, type(None)), help="Where to POST (http:// or https://). Required.",
               check=_url_option)
    schema.add("timeout", (int, float), default=10.0,
               help="Seconds to wait for the endpoint (connect and answer).",
               check=lambda v: ensure(v > 0, "must be > 0 seconds"))
    schema.add("exchange_timeout", (int, float), default=30.0,
               help="Seconds one delivery may take in all (connect, send, answer); a slower "
               "endpoint is cut off, warned about, and retried.",
               check=lambda v: ensure(v > 0, "must be > 0 seconds"))
    schema.add("max_response_bytes", int, default=64 * 1024,
               help="Most bytes of an answer's body read; the rest is not read (the "
               "connection is closed instead).",
               check=lambda v: ensure(v >= 0, "must be >= 0"))
    schema.add("headers", dict, default={},
               help="Extra HTTP headers (not credentials: see headers_env).",
               check=_plain_headers)
    schema.add("headers_env", dict, default={},
               help="Header name -> name of the environment variable holding its value.",
               check=_string_mapping)
    schema.add("secret_env", (str, type(None)),
               help="Name of the environment variable holding the HMAC-SHA256 signing secret.")
    schema.add("spool_dir", (str, type(None)),
               help="Where undelivered events wait (default: under $XDG_STATE_HOME or "
               "~/.local/state/progresskit/webhook/, one directory per URL).")
    schema.add("spool_max_events", int, default=10000,
               help="Most events kept in the spool; beyond, the oldest superseded ones are "
               "dropped and recorded in overflow.jsonl.",
               check=lambda v: ensure(v >= 1, "must be >= 1"))
    schema.add("retry_initial", (int, float), default=1.0,
               help="Seconds before the first retry; doubled per failure, with jitter.",
               check=lambda v: ensure(v > 0, "must be > 0 seconds"))
    schema.add("retry_max", (int, float), default=60.0,
               help="Longest wait between two retries, in seconds.",
               check=lambda v: ensure(v > 0, "must be > 0 seconds"))
    schema.add("flush_timeout", (int, float), default=10.0,
               help="Seconds spent delivering pending events when the sink closes.",
               check=lambda v: ensure(v >= 0, "must be >= 0 seconds"))
    schema.add("startup_check", bool, default=True,
               help="Connect to the endpoint at start-up and refuse to start if it fails.")
    schema.add("heartbeats", bool, default=True,
               help="Also POST the watcher's periodic heartbeat events.")


def _factory(options: Mapping[str, Any]) -> WebhookSink:
    if options.get("url") is None:
        raise ConfigError("key 'url' is required for a webhook sink")
    return WebhookSink(options)


@hookimpl
def progresskit_sink_types() -> list[SinkType]:
    return [
        SinkType(
            "webhook",
            "POST each change as JSON (signed, retried, spooled on disk).",
            _factory,
            _options,
        )
    ]
