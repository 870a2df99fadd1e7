"""Pretrained weights: named backbone weights fetched through the libraries' own caches,
and whole models initialised from torchvision's detection and segmentation zoo.

- :mod:`detseg.zoo.weights`: download through torchvision's weights API / the torch hub
  cache, with one clear error offline (URL, cache path, file name).
- :mod:`detseg.zoo.keymap`: rules that rename a checkpoint's keys into detseg's.
- :mod:`detseg.zoo.entries`: which detseg config mirrors which torchvision builder.
- :mod:`detseg.zoo.init`: ``model.init_from``: load, re-initialise the class-dependent
  layers when the class count differs, and report what happened.
"""

from detseg.zoo.entries import ZOO, ZooEntry, register_zoo_entry
from detseg.zoo.init import InitReport, initialize_from
from detseg.zoo.keymap import Rule, map_state_dict

__all__ = ["ZOO", "InitReport", "Rule", "ZooEntry", "initialize_from", "map_state_dict", "register_zoo_entry"]
