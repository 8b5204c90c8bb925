"""progresskit's ``notify`` sink: run status changes as messages, through Apprise.

The sink type is registered by :mod:`progresskit_notify.plugin` (entry point ``notify``);
which changes become messages is :mod:`progresskit_notify.rules`, how they are sent
:mod:`progresskit_notify.sink`.
"""

__version__ = "0.1.0"
