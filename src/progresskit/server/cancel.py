"""Cancelling runs from the server: who may (the token); how is the engine's
(:func:`progresskit.engine.cancel.cancel_run`, shared with ``progresskit cancel``)."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

# ``cancel`` under its old name: the routes' one call, the engine's code.
from progresskit.engine.cancel import CancelRefused
from progresskit.engine.cancel import cancel_run as cancel
from progresskit.errors import ConfigError

__all__ = ["TOKEN_ENV", "CancelRefused", "Unauthorized", "authorize", "cancel", "resolve_token"]

#: The environment variable holding the cancel token.
TOKEN_ENV = "PROGRESSKIT_TOKEN"
#: Shorter tokens are refused: a guessable token is no protection.
MIN_TOKEN_LENGTH = 16


class Unauthorized(Exception):
    """The request may not cancel: ``status`` is 401 (no token) or 403 (a wrong one)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def resolve_token(
    token_file: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[str, bool]:
    """The cancel token and whether it was generated: ``token_file``'s first line, else
    ``$PROGRESSKIT_TOKEN``, else a fresh random one (which the caller must show)."""
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            what = "is empty" if isinstance(exc, IndexError) else f"cannot be read: {exc}"
            raise ConfigError(f"--token-file {path} {what}") from None
        where = f"--token-file {path}"
    elif environ.get(TOKEN_ENV):
        token, where = environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return secrets.token_urlsafe(24), True
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"{where}: the cancel token must be at least {MIN_TOKEN_LENGTH} characters "
            f"without spaces (got {len(token)} characters)"
        )
    return token, False


def authorize(header: str | None, token: str) -> None:
    """Check an ``Authorization: Bearer <token>`` header; raise :class:`Unauthorized`."""
    if not header:
        raise Unauthorized(401, "cancelling needs the server's token: Authorization: Bearer TOKEN")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(401, "expected the header Authorization: Bearer TOKEN")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized(403, "wrong token")
