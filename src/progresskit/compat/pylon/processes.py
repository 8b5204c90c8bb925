"""Processes as Pylon's system monitor reports them, mapped to the configs they run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from progresskit.compat.pylon.errors import PylonTypeError, PylonValueError
from progresskit.model.core import ProcessInfo

__all__ = [
    "as_process_info",
    "build_config_to_process_mapping",
    "config_to_process_info",
    "parse_config",
]

_FLAG = "--config-filepath"
#: What a Pylon launch command holds; other processes on the GPU are not runs (Pylon's rule).
_LAUNCH = "python main.py --config-filepath"


def parse_config(cmd: str) -> str:
    """The config path in a Pylon launch command, as written there.

    ``python main.py --config-filepath configs/a.py`` -> ``configs/a.py``; the
    ``--config-filepath=configs/a.py`` form is accepted too. A command without the flag, or
    with nothing after it, raises :class:`~progresskit.compat.pylon.errors.PylonValueError`
    (an ``AssertionError``, as Pylon raised); a non-string raises ``PylonTypeError``.
    """
    if not isinstance(cmd, str):
        raise PylonTypeError(f"parse_config expects the command as a str, got {cmd!r}")
    tokens = cmd.split()
    for index, token in enumerate(tokens):
        if token == _FLAG:
            if index + 1 == len(tokens):
                raise PylonValueError(f"{_FLAG} is the last word of the command: {cmd!r}")
            return tokens[index + 1]
        if token.startswith(_FLAG + "="):
            return token[len(_FLAG) + 1 :]
    raise PylonValueError(f"no {_FLAG} in the command: {cmd!r}")


def as_process_info(record: Any) -> ProcessInfo:
    """A process record of any Pylon version: a :class:`ProcessInfo`, or a dict with
    ``pid``/``user``/``cmd``/``start_time`` (the oldest monitor said ``start``)."""
    if isinstance(record, ProcessInfo):
        return record
    if isinstance(record, Mapping):
        try:
            return ProcessInfo(
                pid=record["pid"],
                user=record.get("user"),
                cmd=record.get("cmd", record.get("command")),
                start_time=record.get("start_time", record.get("start")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PylonValueError(f"not a process record {dict(record)!r}: {exc}") from exc
    cmd = getattr(record, "cmd", None)
    if cmd is not None and hasattr(record, "pid"):  # another version's dataclass
        return ProcessInfo(
            pid=record.pid,
            user=getattr(record, "user", None),
            cmd=cmd,
            start_time=getattr(record, "start_time", None),
        )
    raise PylonTypeError(f"expected a ProcessInfo or a process dict, got {record!r}")


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def build_config_to_process_mapping(devices: Iterable[Any]) -> dict[str, ProcessInfo]:
    """Config path -> the process running it, from a system monitor's device records.

    ``devices`` is ``SystemMonitor.connected_gpus`` (or CPUs): dicts or objects with a
    ``processes`` list of dicts or :class:`ProcessInfo`. A device whose ``processes`` is
    ``None`` (its query failed) or that says ``connected: False`` is skipped; only Pylon
    launch commands (``python main.py --config-filepath ...``) count, keyed by the config
    path as written in the command; a later process of the same config wins, as in Pylon.
    """
    if isinstance(devices, (str, bytes, Mapping)) or not isinstance(devices, Iterable):
        raise PylonTypeError(f"expected a list of GPU/CPU records, got {devices!r}")
    mapping: dict[str, ProcessInfo] = {}
    for device in devices:
        if _field(device, "connected") is False:
            continue
        processes = _field(device, "processes")
        if processes is None:
            continue
        for record in processes:
            process = as_process_info(record)
            # ps collapses runs of spaces (Pylon's monitor joins its words with one);
            # a record from elsewhere may not have.
            if process.cmd is not None and _LAUNCH in " ".join(process.cmd.split()):
                mapping[parse_config(process.cmd)] = process
    return mapping


def _device_list(monitor: Any, name: str) -> list[Any]:
    devices = getattr(monitor, name, None)
    # A test double built with Mock(spec=SystemMonitor) answers every attribute: only
    # real lists count.
    return list(devices) if isinstance(devices, (list, tuple)) else []


def config_to_process_info(source: Any) -> dict[str, ProcessInfo]:
    """Config path -> process, from whatever a Pylon caller has at hand.

    ``source`` is a system monitor (its ``connected_gpus``, and its ``connected_cpus``
    when it has them: a CPU-only run is a run too), a list of GPU/CPU records, an existing
    ``{config: process}`` mapping (values as :class:`ProcessInfo` or dicts), or ``None``
    (no processes known).
    """
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): as_process_info(v) for k, v in source.items()}
    if hasattr(source, "connected_gpus"):
        gpus = source.connected_gpus
        if not isinstance(gpus, (list, tuple)):
            raise PylonTypeError(
                f"system monitor's connected_gpus is {gpus!r}, expected a list of GPU records"
            )
        return build_config_to_process_mapping([*gpus, *_device_list(source, "connected_cpus")])
    return build_config_to_process_mapping(source)
