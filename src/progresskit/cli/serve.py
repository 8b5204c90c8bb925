"""Serve the runs under ROOT until Ctrl-C or SIGTERM: JSON API, WebSocket stream,
Prometheus metrics and a dashboard (docs/serve.md). Needs the 'server' extra.

Importing this module needs no server dependency, so the command can explain a missing
extra when it is run.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from urllib.parse import urlsplit

from progresskit.cli.options import EXIT_OK, check_option
from progresskit.engine.monitor import Monitor
from progresskit.errors import ProgresskitError
from progresskit.plugin.config import ensure
from progresskit.plugin.manager import PluginManager
from progresskit.server.settings import ServeSettings

__all__ = ["DEFAULT_PORT", "add_serve_arguments", "run_serve"]

#: Seed 003's StatusMonitor port.
DEFAULT_PORT = 8329
# The server's own defaults, read off a settings object rather than repeated here.
DEFAULT_GRACE = ServeSettings(token="").grace_seconds
DEFAULT_PING_INTERVAL = ServeSettings(token="").ping_interval
_DEFAULTS = ServeSettings(token="")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_BACKLOG = 256


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ROOT", help="the directory whose runs are served")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file whose first line is the cancel token (default: $PROGRESSKIT_TOKEN, "
        "else a random token printed at start)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://grafana.example.org) allowed to call the API from its "
        "pages; repeatable (default: none)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"time a cancelled job gets to exit before it is killed (default: {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=DEFAULT_PING_INTERVAL,
        metavar="SECONDS",
        help="silence after which WebSocket clients get a ping message "
        f"(default: {DEFAULT_PING_INTERVAL:g})",
    )

    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the server answers to (DNS-rebinding guard); repeatable; required "
        "with a --host beyond loopback (default: 127.0.0.1, localhost, ::1)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin besides the server's own pages allowed to open the streams and "
        "send requests; repeatable (default: none)",
    )
    parser.add_argument(
        "--sink-spool",
        action="append",
        default=[],
        metavar="DIR",
        help="a webhook sink's spool_dir whose lost events /metrics reports; repeatable "
        "(default spools are reported without it)",
    )
    parser.add_argument(
        "--metrics-max-runs",
        type=int,
        default=_DEFAULTS.metrics_max_runs,
        metavar="N",
        help="most runs with series of their own on /metrics, the most urgent first; the "
        f"others are counted per status (default: {_DEFAULTS.metrics_max_runs}; 0: none)",
    )
    limits = parser.add_argument_group("limits (docs/serve.md, 'Limits')")
    limits.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"most open connections; beyond: 503 (default: {_DEFAULTS.max_connections}, at "
        "most half the open-files limit)",
    )
    limits.add_argument(
        "--max-stream-clients",
        type=int,
        default=_DEFAULTS.max_ws_clients,
        metavar="N",
        help=f"most WebSocket clients (default: {_DEFAULTS.max_ws_clients})",
    )
    limits.add_argument(
        "--header-timeout",
        type=float,
        default=_DEFAULTS.header_timeout,
        metavar="SECONDS",
        help="time a connection has to send a request's headers "
        f"(default: {_DEFAULTS.header_timeout:g})",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=_DEFAULTS.idle_timeout,
        metavar="SECONDS",
        help=f"time an idle keep-alive connection is kept (default: {_DEFAULTS.idle_timeout:g})",
    )
    limits.add_argument(
        "--max-body",
        type=int,
        default=_DEFAULTS.max_body_bytes,
        metavar="BYTES",
        help=f"most bytes of a request body (default: {_DEFAULTS.max_body_bytes})",
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str, loopback: bool, allowed: list[str]) -> tuple[str, ...]:
    """The Host names to answer: loopback's, or, beyond loopback, the ``--allow-host``
    list, which is then required (a DNS-rebinding page names the attacker's host)."""
    names = tuple(name.strip().lower() for name in allowed)
    for name in names:
        if not name or any(c in name for c in "/ @"):
            raise ProgresskitError(
                f"--allow-host {name!r}: expected a host name or address without a port "
                "or scheme, e.g. monitor.example.org or 10.0.0.5"
            )
    if loopback:
        return (*_LOOPBACK_HOSTS, *names)
    if not names:
        raise ProgresskitError(
            f"--host {host} listens beyond this machine: name the host names clients use "
            "to reach it with --allow-host NAME (repeatable), e.g. --allow-host "
            f"{socket.gethostname()}; requests naming any other Host are refused"
        )
    return names


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ProgresskitError(
            f"--allow-origin {value!r}: expected a web origin, scheme://host[:port] "
            "(e.g. https://grafana.example.org)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _connection_cap(requested: int | None) -> int:
    """``requested``, else the default, lowered under a low open-files limit: connections
    beyond half of it would leave the monitor and the accept loop without file descriptors
    (EMFILE). An explicit value is kept, with a warning."""
    import resource

    wanted = _DEFAULTS.max_connections if requested is None else requested
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = max(1, soft // 2)
    if soft == resource.RLIM_INFINITY or wanted <= cap:
        return wanted
    if requested is not None:
        _say(
            f"WARNING: --max-connections {requested} is over half the open-files limit "
            f"(ulimit -n {soft}): the server may run out of file descriptors"
        )
        return requested
    _say(f"at most {cap} connections: half the open-files limit (ulimit -n {soft})")
    return cap


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ProgresskitError(f"--host {host}: cannot resolve it: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ProgresskitError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}"
        ) from None
    return sock


def _say(message: str) -> None:
    print(f"progresskit serve: {message}", file=sys.stderr, flush=True)


def run_serve(pm: PluginManager, args: argparse.Namespace) -> int:
    """Serve the runs under ``args.root`` until SIGINT or SIGTERM."""
    check_option("--grace", args.grace, lambda v: ensure(v >= 0, "must be >= 0 seconds"))
    check_option(
        "--ping-interval", args.ping_interval, lambda v: ensure(v > 0, "must be > 0 seconds")
    )
    for flag in ("--max-connections", "--max-stream-clients", "--max-body"):
        check_option(
            flag,
            getattr(args, flag[2:].replace("-", "_")),
            lambda v: ensure(v is None or v >= 1, "must be >= 1"),
        )
    check_option(
        "--metrics-max-runs", args.metrics_max_runs, lambda v: ensure(v >= 0, "must be >= 0")
    )
    for flag in ("--header-timeout", "--idle-timeout"):
        check_option(
            flag,
            getattr(args, flag[2:].replace("-", "_")),
            lambda v: ensure(v > 0, "must be > 0 seconds"),
        )
    loopback = _is_loopback(args.host)
    hosts = _allowed_hosts(args.host, loopback, args.allow_host)
    origins = tuple(_origin(o) for o in args.allow_origin)
    try:
        import uvicorn

        from progresskit.server.app import ServeSettings, create_app
        from progresskit.server.cancel import TOKEN_ENV, resolve_token
        from progresskit.server.connections import guarded_protocol, install_log_throttle
    except ImportError as exc:
        raise ProgresskitError(
            f"progresskit serve needs the 'server' extra (missing module {exc.name!r}): "
            "pip install 'progresskit[server]'"
        ) from None
    token, generated = resolve_token(args.token_file, os.environ)
    monitor = Monitor(args.root, config_path=args.config, pm=pm, sinks=[], options=args)
    settings = ServeSettings(
        token=token,
        grace_seconds=args.grace,
        ping_interval=args.ping_interval,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=hosts,
        allowed_origins=origins,
        max_body_bytes=args.max_body,
        max_connections=_connection_cap(args.max_connections),
        max_ws_clients=args.max_stream_clients,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        sink_spools=tuple(os.path.abspath(os.path.expanduser(d)) for d in args.sink_spool),
        metrics_max_runs=args.metrics_max_runs,
    )
    app = create_app(monitor, pm, settings)
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/"
    _say(f"watching {monitor.root} ({monitor.mode} mode)")
    _say(f"dashboard {url}")
    if generated:
        _say(f"cancel token (random; set ${TOKEN_ENV} or --token-file to choose): {token}")
        _say(f"open {url}#token={token} to cancel jobs from the dashboard")
    if not loopback:
        border = "!" * 78
        _say(border)
        _say(f"WARNING: listening on {args.host}: every host that can reach port {port} can")
        _say("read the status of every run (names, paths, commands, metrics).")
        if generated:
            _say("No token was configured: anyone who sees the one printed above can cancel")
            _say(f"jobs. Set ${TOKEN_ENV} or --token-file, or bind 127.0.0.1 behind a proxy.")
        _say(border)
    if "*" in hosts:
        _say("WARNING: --allow-host '*': any Host is answered, DNS rebinding is not guarded")
    config = uvicorn.Config(
        app,
        http=guarded_protocol(settings),
        timeout_keep_alive=max(1, round(settings.idle_timeout)),
        # asyncio tries up to this many accepts per wake-up, and on EMFILE schedules a retry
        # for each: the listen backlog we set, not uvicorn's 2048.
        backlog=_BACKLOG,
        # The request line and headers together; h11's default, said here.
        h11_max_incomplete_event_size=16 * 1024,
        log_level="warning",
        lifespan="on",
        ws_max_size=64 * 1024,  # clients send only small requests
        # Compressing is per connection: every change would be deflated once per client.
        ws_per_message_deflate=False,
        # Every change goes to every client: uvicorn's Sans-I/O binding sends cheaper than
        # its legacy one (benchmarks/serve.py, p95 with 100 clients).
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )
    install_log_throttle(settings.resource_log_interval)
    uvicorn.Server(config).run(sockets=[sock])
    return EXIT_OK
