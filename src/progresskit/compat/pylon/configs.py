"""Pylon's run configs: read without executing them, translated into progresskit's keys.

Pylon's ``configs/<name>.py`` files are Python (``config = {'runner': Trainer, ...}``)
that import torch, datasets and model code; Pylon executed them. progresskit reads them
with :mod:`ast`: literal values are taken, a class reference is kept by its name, and
anything else (a call, an expression) is reported in a warning and left out.
"""

from __future__ import annotations

import ast
import os
import warnings
from collections.abc import Mapping
from typing import Any

from progresskit.errors import ConfigError
from progresskit.plugin.manager import PluginManager

__all__ = [
    "ClassRef",
    "NonLiteral",
    "PylonConfigWarning",
    "read_pylon_config",
    "runner_class_name",
    "translate_config",
]


class PylonConfigWarning(UserWarning):
    """A value of a Pylon config could not be read or used (the text says which)."""


class ClassRef:
    """A class named in a config file that was read, not executed (``'runner': Trainer``)."""

    __slots__ = ("__name__",)

    def __init__(self, name: str):
        self.__name__ = name

    def __repr__(self) -> str:
        return f"ClassRef({self.__name__!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassRef) and other.__name__ == self.__name__

    def __hash__(self) -> int:
        return hash(self.__name__)


class NonLiteral:
    """A config value that is not a literal (a call, an expression): its source text."""

    __slots__ = ("source",)

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return f"NonLiteral({self.source!r})"


def _value(node: ast.expr, where: str, problems: list[str]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:  # {**other}: the merged keys are not known without running it
                problems.append(f"{where}: '**{ast.unparse(value_node)}' is not a literal")
                continue
            key = _value(key_node, where, problems)
            label = f"{where}.{key}" if where else str(key)
            result[key] = _value(value_node, label, problems)
        return result
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_value(e, where, problems) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand, where, problems)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Name):
        return ClassRef(node.id)
    if isinstance(node, ast.Attribute):  # torch.nn.MSELoss: a class by its last name
        return ClassRef(node.attr)
    text = ast.unparse(node)
    problems.append(f"{where or 'config'}: {text!r} is not a literal")
    return NonLiteral(text)


def read_pylon_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config`` dict of a Pylon config file, read with :mod:`ast`, never executed.

    Top-level ``config = {...}`` and ``config['key'] = value`` statements are read in
    order. Non-literal values are :class:`NonLiteral` and named in one
    :class:`PylonConfigWarning`; a file that defines no ``config`` dict gives ``{}`` with a
    warning. Raises ``OSError`` when the file cannot be read and ``SyntaxError`` when it is
    not Python.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=path)
    problems: list[str] = []
    config: dict[Any, Any] | None = None
    for statement in tree.body:
        if not isinstance(statement, ast.Assign):
            continue
        for target in statement.targets:
            if isinstance(target, ast.Name) and target.id == "config":
                value = _value(statement.value, "", problems)
                if isinstance(value, dict):
                    config = value
                else:
                    problems.append(f"'config' is assigned {ast.unparse(statement.value)!r}")
            elif (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Name)
                and target.value.id == "config"
                and config is not None
            ):
                key = _value(target.slice, "", problems)
                config[key] = _value(statement.value, str(key), problems)
    if config is None:
        problems.append("no top-level 'config = {...}' dict")
        config = {}
    if problems:
        warnings.warn(
            PylonConfigWarning(
                f"{path}: read without executing it; left out: {'; '.join(problems)}"
            ),
            stacklevel=2,
        )
    return config


def runner_class_name(value: Any) -> str:
    """The class name a Pylon ``runner`` value names: ``Cls``, ``{'class': Cls}``, a string."""
    if isinstance(value, Mapping):
        value = value.get("class")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    name = getattr(value, "__name__", None)
    return name if isinstance(name, str) else type(value).__name__


def _args(value: Any) -> Mapping[str, Any]:
    args = value.get("args") if isinstance(value, Mapping) else None
    return args if isinstance(args, Mapping) else {}


def _metric_setting(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """(score key, 'max'|'min') of Pylon's ``metric``, when it can be known without running it.

    A metric class's ``DIRECTIONS`` ({key: +1|-1}, Pylon's convention) says it; a metric
    whose class or arguments name a loss is the ``loss`` score, lower is better (Pylon's
    ``PyTorchMetricWrapper(metric=...Loss())``, whose validation scores are ``{'loss': ...}``).
    """
    metric = config.get("metric")
    if metric is None:
        return None
    if isinstance(metric, str):
        return metric, str(config.get("metric_direction") or "max")
    cls = metric.get("class") if isinstance(metric, Mapping) else metric
    directions = getattr(cls, "DIRECTIONS", None)
    if isinstance(directions, Mapping) and len(directions) == 1:
        key, sign = next(iter(directions.items()))
        return str(key), "max" if sign > 0 else "min"
    text = f"{runner_class_name(cls)} {_args(metric)!r}"
    if "loss" in text.lower():
        return "loss", "min"
    return None


def _early_stopping(config: Mapping[str, Any], problems: list[str]) -> Any:
    value = config.get("early_stopping")
    if not isinstance(value, Mapping) or "class" not in value:
        # None, or progresskit's own shape (a patience, or {patience, metric, direction}),
        # which the schema checks.
        return value
    args = _args(value)
    if not args.get("enabled", True):
        return None
    patience = args.get("epochs", 10)  # Pylon's EarlyStopping(epochs=10) default
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
        problems.append(f"early_stopping patience {patience!r} is not an integer >= 1")
        return None
    metric = _metric_setting(config)
    if metric is None:
        # Pylon judges nothing without a metric either (_detect_early_stopping).
        return None
    return {"patience": patience, "metric": metric[0], "direction": metric[1]}


def translate_config(
    pm: PluginManager, config: Mapping[str, Any] | None, where: str
) -> dict[str, Any]:
    """A Pylon config dict as progresskit config values, for the seed API.

    Keys progresskit does not know (``model``, ``dataset``, ``optimizer``, ...) are ignored;
    class-valued ``runner`` entries become their ``__name__``; Pylon's
    ``early_stopping: {class, args}`` and ``metric`` become progresskit's settings. A known
    key whose value does not fit is left out with a :class:`PylonConfigWarning`. Never
    raises :class:`~progresskit.errors.ConfigError`.
    """
    if not isinstance(config, Mapping):
        return {}
    known = {key.name for key in pm.schema.declared()}
    problems: list[str] = []
    candidates: dict[str, Any] = {}
    for name, value in config.items():
        if name in ("runner", "early_stopping", "metric") or name not in known:
            continue
        candidates[str(name)] = value
    runner = runner_class_name(config.get("runner"))
    if runner:
        candidates["runner"] = runner
    early = _early_stopping(config, problems)
    if early is not None:
        candidates["early_stopping"] = early
    metric = config.get("metric")
    if isinstance(metric, str):
        candidates["metric"] = metric
    result: dict[str, Any] = {}
    for name, value in candidates.items():
        if isinstance(value, NonLiteral):
            continue  # already named in the reader's warning
        try:
            pm.schema.validate({name: value}, where)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        result[name] = value
    if problems:
        warnings.warn(PylonConfigWarning(f"{where}: not used: {'; '.join(problems)}"), stacklevel=3)
    return result
