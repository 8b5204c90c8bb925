"""The progresskit hooks of the notify plugin (entry point ``notify``): the ``notify`` sink.

```yaml
sinks:
  - type: notify
    urls_env: PROGRESSKIT_NOTIFY_URLS     # Apprise URLs carry tokens: keep them out of YAML
    rules:
      - statuses: [crashed, failed]
        runs: ["sweeps/*"]
        every_minutes: 30
```

Apprise is imported when a ``notify`` sink is built, not when the plugin loads: every
command loads every plugin, few configure this sink.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from progresskit import ConfigError, ConfigSchema, SinkType, ensure, hookimpl
from progresskit_notify.rules import Pacer, parse_rules
from progresskit_notify.sink import NotifySink

__all__ = ["progresskit_sink_types"]

_SEPARATORS = re.compile(r"[\s,]+")


def _url_list(value: Any) -> None:
    ensure(
        isinstance(value, list) and all(isinstance(v, str) and v for v in value),
        f"expected a list of Apprise URLs (strings), got {value!r}",
    )


def _check_rules(value: Any) -> None:
    parse_rules(value)


def _options(schema: ConfigSchema) -> None:
    schema.add("urls", list, default=[],
               help="Apprise URLs to notify (slack://, discord://, matrix://, ntfy://, "
               "mailto://, json://...). Secrets in them are better in urls_env.",
               check=_url_list)
    schema.add("urls_env", (str, type(None)),
               help="Name of an environment variable holding more Apprise URLs, separated "
               "by spaces, commas or newlines.")
    schema.add("rules", list, default=[{}],
               help="Which changes notify: a list of {statuses, runs, every_minutes}; the "
               "first rule matching a run decides (default: crashed, failed or stuck, any "
               "run, at most one message per run per 30 minutes).",
               check=_check_rules)
    schema.add("notify_new", bool, default=False,
               help="Also notify for a run seen for the first time already in a rule's "
               "status (every run when the watcher starts).")
    schema.add("flush_timeout", (int, float), default=10.0,
               help="Seconds spent sending pending messages when the sink closes.",
               check=lambda v: ensure(v >= 0, "must be >= 0 seconds"))


def _urls(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where it came from, URL) for every URL configured."""
    found = [(f"urls[{i}]", url) for i, url in enumerate(options["urls"])]
    variable = options.get("urls_env")
    if variable is not None:
        text = os.environ.get(variable)
        if text is None:
            raise ConfigError(f"key 'urls_env': environment variable {variable} is not set")
        found += [(f"${variable} URL {i + 1}", url)
                  for i, url in enumerate(u for u in _SEPARATORS.split(text) if u)]
    if not found:
        raise ConfigError("a notify sink needs at least one URL: set 'urls' or 'urls_env'")
    return found


def _factory(options: Mapping[str, Any]) -> NotifySink:
    import apprise

    targets = apprise.Apprise()
    for where, url in _urls(options):
        if not targets.add(url):
            # The scheme only: the rest of an Apprise URL is often a token.
            scheme = urlsplit(url).scheme or url.split(":", 1)[0]
            raise ConfigError(
                f"{where}: Apprise does not accept this URL (scheme '{scheme}'; see "
                "https://github.com/caronc/apprise/wiki for each service's URL)"
            )
    pacer = Pacer(parse_rules(options["rules"]), notify_new=bool(options["notify_new"]))
    return NotifySink(targets, pacer, flush_timeout=float(options["flush_timeout"]))


@hookimpl
def progresskit_sink_types() -> list[SinkType]:
    return [
        SinkType(
            "notify",
            "Send status changes as messages (Slack, Discord, Matrix, ntfy, e-mail, "
            "desktop...) through Apprise, by rules.",
            _factory,
            _options,
        )
    ]
