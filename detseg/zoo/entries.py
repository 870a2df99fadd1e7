"""torchvision zoo builders that detseg mirrors: the detseg config that reproduces each
architecture, the key map that loads its checkpoint, and its class-dependent layers.

Each family registers its entries from its own module (``detseg/zoo/rcnn.py``,
``ssd.py``, ``segmentation.py``); :func:`zoo_entry` imports them all on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from detseg.errors import ConfigError
from detseg.registry import did_you_mean
from detseg.zoo.keymap import Rule

FAMILY_MODULES = ("detseg.zoo.rcnn", "detseg.zoo.ssd", "detseg.zoo.segmentation")


@dataclass(frozen=True)
class ZooEntry:
    """Args:
        builder: the ``torchvision.models`` builder (``fasterrcnn_resnet50_fpn``).
        config: the detseg model config under ``configs/model/`` that mirrors it.
        rules: the key map, torchvision key -> detseg key (see :mod:`detseg.zoo.keymap`).
        class_layers: detseg key prefixes whose shape depends on the class count; they
            are re-initialised when the data set's classes differ from the checkpoint's.
        num_classes: the checkpoint's class count in detseg's convention (without
            background for detectors: COCO's 91 ids -> 90; with it for segmenters: 21).
    """

    builder: str
    config: str
    rules: tuple[Rule, ...]
    class_layers: tuple[str, ...]
    num_classes: int


ZOO: dict[str, ZooEntry] = {}


def register_zoo_entry(entry: ZooEntry) -> ZooEntry:
    ZOO[entry.builder] = entry
    return entry


def _load_families() -> None:
    for module in FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a family module that exists but fails to import is a bug
                raise


def zoo_entries() -> dict[str, ZooEntry]:
    """Every registered entry, by builder name."""
    _load_families()
    return dict(ZOO)


def zoo_entry(builder: str, where: str = "model.init_from") -> ZooEntry:
    """The entry of ``builder``; an unknown builder fails naming the closest ones."""
    entries = zoo_entries()
    if builder not in entries:
        raise ConfigError(f"{where}: torchvision builder '{builder}' is not in detseg's zoo"
                          f"{did_you_mean(builder, list(entries))}; supported: {', '.join(sorted(entries))}")
    return entries[builder]
