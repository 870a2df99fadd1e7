"""Check plain config values against schema annotations before anything is built.

Validation walks the whole tree: unknown registry names, unknown keys at any depth and
values of the wrong type or out of range fail with the config path and the nearest valid
choice. A component node's keyword arguments are checked against its builder's own
signature, so defaults live in one place: the constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from detseg.config_schema import SUPPLIED_BY_CALLER, Range
from detseg.errors import ConfigError
from detseg.registry import Registry, did_you_mean


def validate(value: Any, annotation: Any, path: str) -> None:
    """Check a plain config value against a type annotation, recursively.

    Understands dataclasses (sections), ``Component(REGISTRY)`` nodes, ``Optional``/unions,
    ``list``/``tuple``/``dict``, ``Literal`` and scalars.
    Annotations it does not understand accept anything.

    Raises:
        ConfigError / KeyError naming ``path``.
    """
    if isinstance(annotation, str):
        return  # an unresolvable forward reference: accept anything
    registry = _registry_of(annotation)
    if registry is not None:
        validate_component(value, registry, path)
        return
    if typing.get_origin(annotation) is Annotated:
        inner, *extras = typing.get_args(annotation)
        validate(value, inner, path)
        for bound in extras:
            if isinstance(bound, Range) and isinstance(value, (int, float)) and not bound.contains(value):
                raise ConfigError(f"{path}: {value!r} is out of range; allowed: {bound}")
        return
    origin = typing.get_origin(annotation)
    if annotation in (None, Any, inspect.Parameter.empty) or annotation is object:
        return
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        _validate_section(value, annotation, path)
        return
    if origin in (Union, types.UnionType):
        _validate_union(value, typing.get_args(annotation), path)
        return
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices])
            raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}{hint}")
        return
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            for i, (item, item_type) in enumerate(zip(value, args)):
                validate(item, item_type, f"{path}[{i}]")
        elif args:
            for i, item in enumerate(value):
                validate(item, args[0], f"{path}[{i}]")
        return
    if origin in (dict, Mapping, typing.Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return
    _validate_scalar(value, annotation, path)


def validate_component(value: Any, registry: Registry, path: str) -> None:
    """Check a ``{name: ..., **kwargs}`` node against the registered builder's signature.

    Parameters in ``SUPPLIED_BY_CALLER`` or the registry's ``supplied_keys`` are neither
    required nor accepted in the node.
    """
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{path}: expected a {registry.kind} node like {{name: ..., ...}}, "
            f"got {_describe(value)}"
        )
    if "name" not in value:
        raise ConfigError(
            f"{path}: {registry.kind} node has no 'name'; choose one of: "
            f"{', '.join(registry.names())}"
        )
    builder = registry.get(value["name"], where=f"{path}.name")
    params, hints, takes_any = builder_signature(builder)
    for key, item in value.items():
        if key == "name":
            continue
        if key in registry.shared_keys:
            validate(item, registry.shared_keys[key], f"{path}.{key}")
            continue
        if key in registry.supplied_keys:
            raise ConfigError(f"{path}: '{key}' is not set in a {registry.kind} node; it is supplied by the "
                              f"model builder: set {registry.supplied_keys[key]} instead")
        if key in SUPPLIED_BY_CALLER:
            raise ConfigError(f"{path}: '{key}' is not set in a {registry.kind} node; it is supplied by code")
        if key not in params and not takes_any:
            raise ConfigError(
                f"{path}: unexpected key '{key}' for {registry.kind} '{value['name']}'"
                f"{did_you_mean(key, list(params))}. Valid keys: {', '.join(params) or '(none)'}"
            )
        validate(item, hints.get(key), f"{path}.{key}")
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty and name not in value
        and name not in SUPPLIED_BY_CALLER and name not in registry.supplied_keys
    ]
    if missing:
        raise ConfigError(
            f"{path}: {registry.kind} '{value['name']}' needs key(s) {', '.join(missing)}"
        )


def _validate_section(value: Any, schema: type, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema, include_extras=True)
    for key, item in value.items():
        if key not in fields:
            where = path or "<root>"
            raise ConfigError(
                f"{where}: unexpected key '{key}'{did_you_mean(str(key), list(fields))}. "
                f"Valid keys: {', '.join(fields)}"
            )
        validate(item, hints[key], f"{path}.{key}" if path else str(key))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in value:
            raise ConfigError(f"{path or '<root>'}: missing required key '{name}'")


def _validate_union(value: Any, options: tuple, path: str) -> None:
    if value is None and type(None) in options:
        return
    rest = [o for o in options if o is not type(None)]
    if len(rest) == 1:
        validate(value, rest[0], path)
        return
    for option in rest:
        try:
            validate(value, option, path)
            return
        except (ConfigError, KeyError):
            continue
    raise ConfigError(f"{path}: expected {_type_name(typing.Union[options])}, got {_describe(value)}")


def _validate_scalar(value: Any, annotation: Any, path: str) -> None:
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation in (str, Path):
        ok = isinstance(value, str)
    elif annotation is type(None):
        ok = value is None
    else:
        return  # a type we cannot check from YAML (a tensor, a callable, a module)
    if not ok:
        raise ConfigError(f"{path}: expected {_type_name(annotation)}, got {_describe(value)}")


def _registry_of(annotation: Any) -> Registry | None:
    """The registry of a ``Component(REGISTRY)`` annotation, else None."""
    if typing.get_origin(annotation) is Annotated:
        for extra in typing.get_args(annotation)[1:]:
            if isinstance(extra, Registry):
                return extra
    return None


def builder_signature(builder: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Keyword parameters of ``builder``, their resolved type hints, and ``**kwargs``."""
    signature = inspect.signature(builder)
    params = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    target = builder.__init__ if isinstance(builder, type) else builder
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except (NameError, TypeError, AttributeError) as exc:
        raise TypeError(f"the type annotations of {_qualified_name(builder)} do not resolve "
                        f"({type(exc).__name__}: {exc}); config validation needs them") from exc
    return params, hints, takes_any


def _qualified_name(builder: Any) -> str:
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', builder)}"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
