"""Compose an experiment YAML with Hydra's compose API and turn it into plain values.

An experiment is one YAML file anywhere on disk. Its Hydra ``defaults`` list pulls parts
from the project's config root (``configs/``: groups ``data/``, ``model/``, ``train/`` ...),
and ``key=value`` overrides change any value, or pick another group option (``data=coco``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from detseg.errors import ConfigError
from detseg.registry import did_you_mean

PROJECT_CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

CONFIG_GROUPS = frozenset({"data", "evaluator", "model", "schedule", "train"})
"""Config groups under configs/: ``data=coco`` picks an option, it does not add a key.
A folder of ``configs/`` that is not a group holds experiments."""


def find_config_root(path: Path) -> Path:
    """The nearest ancestor directory called ``configs``, else the project's own."""
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent
    return PROJECT_CONFIG_ROOT


def experiment_files(root: Path = PROJECT_CONFIG_ROOT) -> list[Path]:
    """The experiment YAMLs of a config root: ``*.yaml`` and ``<family>/*.yaml`` outside the groups."""
    return sorted([*root.glob("*.yaml"), *(p for p in root.glob("*/*.yaml") if p.parent.name not in CONFIG_GROUPS)])


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
    group_choices = [o for o in overrides if _is_group_choice(o.split("=", 1)[0])]
    base = _compose(path, group_choices)
    return _compose(path, [_allow_new_key(base, item) for item in overrides])


def load_node(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """One group option (``configs/model/faster_rcnn_tiny.yaml``) composed with its own
    defaults list (its backbone from ``configs/model/backbone/``), resolved, as an editable
    ``DictConfig``: what ``OmegaConf.load`` gives for a file without a defaults list."""
    return OmegaConf.create(to_plain(load_config(path, overrides)))


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


def _is_group_choice(key: str) -> bool:
    """``model=x`` and ``model/backbone=x`` pick group options; ``model.x=1`` sets a value."""
    return key in CONFIG_GROUPS or "/" in key


def _allow_new_key(base: DictConfig, override: str) -> str:
    """``a.b=1`` -> ``+a.b=1`` when ``a.b`` is not in ``base`` (Hydra needs the ``+``)."""
    if "=" not in override or override[0] in "+~":
        return override
    key = override.split("=", 1)[0]
    if not _is_group_choice(key) and OmegaConf.select(base, key, default=_MISSING) is _MISSING:
        return f"+{override}"
    return override


_MISSING = object()


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
