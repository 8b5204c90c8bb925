"""``progresskit serve``: an HTTP API, a WebSocket stream and a dashboard of job cards.

Installed with the ``server`` extra (``pip install 'progresskit[server]'``; Starlette and
uvicorn). The modules: :mod:`~progresskit.server.views` (the JSON shapes, opaque run ids),
:mod:`~progresskit.server.hub` (the state the monitoring engine feeds and the WebSocket
fan-out), :mod:`~progresskit.server.metrics` (Prometheus text),
:mod:`~progresskit.server.cancel` (the cancel token and the ``progresskit_cancel`` hook),
:mod:`~progresskit.server.app` (routes) and :mod:`~progresskit.server.command` (the CLI
command). The dashboard is static HTML/CSS/JS in ``static/``. See docs/serve.md.
"""
