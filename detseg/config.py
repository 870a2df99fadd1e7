"""Load experiment YAMLs with Hydra's compose API, validate them, build components.

An experiment is one YAML file anywhere on disk. Its Hydra ``defaults`` list pulls parts
from the project's config root (``configs/``: groups ``data/``, ``evaluator/`` ...), and
``key=value`` overrides change any value, or pick another group option (``data=coco``).

Every node that builds a component names it by registry name plus keyword arguments::

    dataset: {name: shapes, split: val, num_images: 64}

Validation walks the whole tree *before* anything is built: unknown registry names,
unknown keys at any depth and values of the wrong type fail with the config path and
the nearest valid choice. Keyword arguments are checked against the builder's own
signature, so defaults live in one place: the constructor.

This module builds components and section dataclasses from validated nodes; loading
lives in :mod:`detseg.config_load`, the schema vocabulary in :mod:`detseg.config_schema`,
validation in :mod:`detseg.config_validate` and the record of used keys in
:mod:`detseg.config_record`. Their public names are importable from here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from detseg.config_load import (
    CONFIG_GROUPS,
    PROJECT_CONFIG_ROOT,
    experiment_files,
    find_config_root,
    load_config,
    load_node,
    to_plain,
)
from detseg.config_record import note_consumed, record_consumed_keys
from detseg.config_schema import (
    SUPPLIED_BY_CALLER,
    Component,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    UnitInterval,
)
from detseg.config_validate import builder_signature, validate, validate_component
from detseg.errors import ConfigError, DetsegError
from detseg.registry import Registry

__all__ = [
    "CONFIG_GROUPS", "PROJECT_CONFIG_ROOT", "SUPPLIED_BY_CALLER", "Component", "NonNegativeFloat",
    "NonNegativeInt", "PositiveFloat", "PositiveInt", "Range", "UnitInterval", "build", "build_section",
    "builder_signature", "experiment_files", "find_config_root", "load_config", "load_node",
    "record_consumed_keys", "to_plain", "validate", "validate_component",
]


def build(node: Any, registry: Registry, path: str, **context: Any) -> Any:
    """Validate and build one component node.

    ``context`` holds objects the caller supplies (``SUPPLIED_BY_CALLER``: a data set for
    an evaluator, a transform pipeline for a data set); each is passed only to builders
    whose signature names it.
    """
    node = to_plain(node)
    validate_component(node, registry, path)
    builder = registry.get(node["name"])
    params, _, takes_any = builder_signature(builder)
    supplied = {k: v for k, v in context.items() if k in params or takes_any}
    kwargs = {k: v for k, v in node.items() if k != "name" and k not in registry.shared_keys}
    note_consumed(path, ["name", *kwargs, *(k for k in registry.shared_keys if k in node)])
    kwargs |= supplied
    try:
        return builder(**kwargs)
    except DetsegError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a transform rejecting a value
        raise ConfigError(f"{path}: cannot build {registry.kind} '{node['name']}': {_one_line(exc)}") from exc


def build_section(schema: type, node: Any, path: str) -> Any:
    """The dataclass ``schema`` (a config section, nested sections included) from the
    validated node at ``path``.

    Keys that are not fields of ``schema`` are left out; validation has refused them.
    """
    values = to_plain(node)
    hints = typing.get_type_hints(schema)
    kwargs = {}
    for field in dataclasses.fields(schema):
        if field.name not in values:
            continue
        value = values[field.name]
        options = typing.get_args(hints[field.name]) or (hints[field.name],)  # X | None -> (X, None)
        nested = next((t for t in options if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            value = build_section(nested, value, f"{path}.{field.name}" if path else field.name)
        kwargs[field.name] = value
    note_consumed(path, kwargs)
    return schema(**kwargs)


def _one_line(exc: Exception) -> str:
    """A builder's error on one line; pydantic's (albumentations' argument checks) lists
    each failing argument as ``key: message (got value)``."""
    source = exc.__cause__ if exc.__cause__ is not None else exc  # albumentations re-raises as ValueError
    errors = getattr(source, "errors", None)
    if callable(errors):
        try:
            items = errors()
        except Exception:  # not pydantic's errors() after all
            items = None
        if items:
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'value'}: {e.get('msg')} "
                             f"(got {e.get('input')!r})" for e in items)
    return " ".join(str(exc).split())
