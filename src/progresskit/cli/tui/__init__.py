"""``progresskit watch`` on a terminal: the full-screen view, built on Textual
(docs/watch.md says why). :mod:`.view` decides what the screen shows (pure, no Textual);
:mod:`.app` and :mod:`.screens` draw it and take the keys; :mod:`.detail` is a run's page.
"""
