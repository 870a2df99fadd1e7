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
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from detseg.errors import ConfigError, DetsegError
from detseg.registry import Registry, did_you_mean

PROJECT_CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

SUPPLIED_BY_CALLER = frozenset({"dataset", "transforms", "input_shape", "model_input_size", "model_num_classes"})
"""Builder parameters that code passes in (a data set to an evaluator, the transform
pipeline to a data set, the feature shapes and input side a neck or head is built for); a config node
never sets them and validation does not ask."""


def Component(registry: Registry) -> Any:
    """Annotation for a config node built from ``registry`` (``{name: ..., **kwargs}``)."""
    return Annotated[Mapping, registry]


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a numeric config value, carried by ``Annotated[int | float, Range(...)]``.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``None`` is unbounded.
    Validation refuses a value outside them, naming the key and the allowed range.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{low}, {high}{right}"


PositiveInt = Annotated[int, Range(1)]
"""A count that must be at least 1: batch sizes, iteration counts, top-k."""
NonNegativeInt = Annotated[int, Range(0)]
"""A count where 0 means "none" or "off": warmup iterations, workers, evaluation period."""
PositiveFloat = Annotated[float, Range(0, low_open=True)]
"""A strictly positive real: learning rates, gradient-norm caps, loss weights' scales."""
NonNegativeFloat = Annotated[float, Range(0)]
"""A real that may be 0: weight decay, minimum box sizes."""
UnitInterval = Annotated[float, Range(0, 1)]
"""A value in [0, 1]: probabilities, IoU and score thresholds, fractions, momenta."""


# ---------------------------------------------------------------------------------------
# Loading


def find_config_root(path: Path) -> Path:
    """The nearest ancestor directory called ``configs``, else the project's own."""
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent
    return PROJECT_CONFIG_ROOT


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the YAML at ``path`` with its defaults list and ``key=value`` overrides.

    An override may set a key the YAML leaves out (its default lives in a constructor
    signature): it is added, and validation then checks it like any other key, so a
    typo is reported with the nearest valid key.

    Returns:
        A struct-mode ``DictConfig`` (setting a key that does not exist raises).

    Raises:
        ConfigError: missing file, invalid YAML, bad override syntax, or an unknown
            group option.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config path is a folder, not a YAML file: {path}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"config file must be .yaml or .yml: {path}")
    group_choices = [o for o in overrides if o.split("=", 1)[0] in _GROUPS]
    base = _compose(path, group_choices)
    return _compose(path, [_allow_new_key(base, item) for item in overrides])


def _compose(path: Path, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    root = find_config_root(path)
    try:
        with initialize_config_dir(config_dir=str(path.resolve().parent), version_base=None):
            cfg = compose(config_name=path.stem,
                          overrides=[f"hydra.searchpath=[file://{root}]", *overrides])
    except HydraException as exc:
        raise ConfigError(f"{path}: {_hydra_message(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def _hydra_message(exc: Exception) -> str:
    """Hydra's error on one line: an unknown group option lists the available ones (nearest
    first), a bad override says what was expected."""
    text = str(exc).split("Config search path:")[0].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[1].startswith("Available options in"):
        options = lines[2:]
        missing = lines[0].rsplit("/", 1)[-1].strip("'")
        return f"{lines[0]}{did_you_mean(missing, options)}. {lines[1].rstrip(':')}: {', '.join(options)}"
    if lines and lines[0].startswith("Error parsing override"):
        return f"{lines[0]}: expected key=value (Hydra's override syntax)"
    return " ".join(lines)


def _allow_new_key(base: DictConfig, override: str) -> str:
    """``a.b=1`` -> ``+a.b=1`` when ``a.b`` is not in ``base`` (Hydra needs the ``+``)."""
    if "=" not in override or override[0] in "+~":
        return override
    key = override.split("=", 1)[0]
    if OmegaConf.select(base, key, default=_MISSING) is _MISSING and key not in _GROUPS:
        return f"+{override}"
    return override


_MISSING = object()
_GROUPS = frozenset({"data", "evaluator", "model"})
"""Config groups under configs/: ``data=coco`` picks an option, it does not add a key."""


def to_plain(cfg: Any) -> Any:
    """Resolve interpolations and turn OmegaConf containers into dicts and lists.

    Raises:
        ConfigError: a mandatory value (``???``) left unset, or a broken interpolation.
    """
    if not OmegaConf.is_config(cfg):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key}: required value is not set (it is ??? in the YAML); "
                          f"set it with {exc.full_key}=...") from None
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{exc.full_key}: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------
# Validation


def validate(value: Any, annotation: Any, path: str) -> None:
    """Check a plain config value against a type annotation, recursively.

    Understands dataclasses (sections), ``Component(REGISTRY)`` nodes, registry base
    classes, ``Optional``/unions, ``list``/``tuple``/``dict``, ``Literal`` and scalars.
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

    Parameters in ``SUPPLIED_BY_CALLER`` are neither required nor accepted in the node.
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
    params, hints, takes_any = _signature(builder)
    for key, item in value.items():
        if key == "name":
            continue
        if key in registry.shared_keys:
            validate(item, registry.shared_keys[key], f"{path}.{key}")
            continue
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
        and name not in SUPPLIED_BY_CALLER
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


_REGISTRIES_BY_BASE: dict[type, Registry] = {}


def _registry_of(annotation: Any) -> Registry | None:
    if typing.get_origin(annotation) is Annotated:
        for extra in typing.get_args(annotation)[1:]:
            if isinstance(extra, Registry):
                return extra
        return None
    if isinstance(annotation, type):
        for reg in Registry.instances:
            if reg.base is not None and reg.base is annotation:
                return reg
    return None


def _signature(builder: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
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


# ---------------------------------------------------------------------------------------
# Building


def build(node: Any, registry: Registry, path: str, **context: Any) -> Any:
    """Validate and build one component node.

    ``context`` holds objects the caller supplies (``SUPPLIED_BY_CALLER``: a data set for
    an evaluator, a transform pipeline for a data set); each is passed only to builders
    whose signature names it.
    """
    node = to_plain(node)
    if not isinstance(node, Mapping) or "name" not in node:
        validate_component(node, registry, path)  # raises, naming what is missing
    validate_component(node, registry, path)
    builder = registry.get(node["name"])
    params, _, takes_any = _signature(builder)
    supplied = {k: v for k, v in context.items() if k in params or takes_any}
    kwargs = {k: v for k, v in node.items() if k != "name" and k not in registry.shared_keys} | supplied
    try:
        return builder(**kwargs)
    except DetsegError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a transform rejecting a value
        raise ConfigError(f"{path}: cannot build {registry.kind} '{node['name']}': {_one_line(exc)}") from exc


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
