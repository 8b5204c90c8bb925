"""What progresskit's own tests share besides fixtures (those are in ``tests/conftest.py``
and in the shipped kit, ``progresskit.testing``).

- :mod:`helpers.runs`: Pylon trainer and evaluator work dirs with controlled timestamps;
- :mod:`helpers.cli`: the ``progresskit`` command in a subprocess;
- :mod:`helpers.serve`: a real ``progresskit serve`` on loopback and plain clients;
- :mod:`helpers.webhook_receiver`: an HTTP webhook receiver that can fail on purpose;
- :mod:`helpers.broken_tracker_plugins`: trackers the conformance suite must fail;
- :mod:`helpers.seed_brush_examples`, :mod:`helpers.seed_training_events`: the seeds' own
  code, kept as the seeds wrote it, run against what progresskit writes.

Kept free of imports so that a subprocess can import one seed module cheaply.
"""
