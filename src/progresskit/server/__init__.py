"""``progresskit serve``: an HTTP API, WebSocket streams and a dashboard of job cards.

Installed with the ``server`` extra (``pip install 'progresskit[server]'``; Starlette and
uvicorn). The parts, each in its module (docs/serve.md, "How the server is built"):

- :mod:`~progresskit.server.app`: ``create_app``, which assembles the others;
- :mod:`~progresskit.server.hub`: the state the monitoring engine feeds, and its fan-out of
  every change to the channels;
- :mod:`~progresskit.server.routes`: the HTTP API; :mod:`~progresskit.server.views` its JSON
  shapes and opaque run ids; :mod:`~progresskit.server.metrics` Prometheus text;
  :mod:`~progresskit.server.cancel` the cancel token and the ``progresskit_cancel`` hook;
- :mod:`~progresskit.server.streams`: a WebSocket client's life, its bounded outbox and the
  drop of slow clients;
- :mod:`~progresskit.server.channels`: one module per WebSocket protocol: progresskit's
  own ``/ws`` and, behind their own boundary, the seeds' (``/ws/training``, ``/``);
- :mod:`~progresskit.server.security`: security headers, host guard, CORS, stream origins;
- :mod:`~progresskit.server.settings`: the options (importable without the extra).

The command itself is :mod:`progresskit.cli.serve`; the dashboard is static HTML/CSS/JS in
``static/``.
"""
