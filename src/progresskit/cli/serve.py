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
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


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


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        sock.listen(256)
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
    try:
        import uvicorn

        from progresskit.server.app import ServeSettings, create_app
        from progresskit.server.cancel import TOKEN_ENV, resolve_token
    except ImportError as exc:
        raise ProgresskitError(
            f"progresskit serve needs the 'server' extra (missing module {exc.name!r}): "
            "pip install 'progresskit[server]'"
        ) from None
    token, generated = resolve_token(args.token_file, os.environ)
    monitor = Monitor(args.root, config_path=args.config, pm=pm, sinks=[], options=args)
    loopback = _is_loopback(args.host)
    settings = ServeSettings(
        token=token,
        grace_seconds=args.grace,
        ping_interval=args.ping_interval,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=_LOOPBACK_HOSTS if loopback else ("*",),
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
    config = uvicorn.Config(
        app,
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
    uvicorn.Server(config).run(sockets=[sock])
    return EXIT_OK
