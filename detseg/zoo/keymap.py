"""Rename a foreign checkpoint's keys into detseg's, tensor by tensor.

A key map is an ordered list of :class:`Rule`; the first rule whose ``source`` pattern
matches the start of a key renames it (``re.sub`` semantics, so ``\\1`` refers to a group)
and may transform its tensor (reorder classes, drop the background row). A rule whose
``target`` is ``None`` marks keys that detseg deliberately does not use (an auxiliary
classifier, BatchNorm's ``num_batches_tracked``): they are reported, not refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Rule:
    """``source``: a regular expression matched at the start of a checkpoint key;
    ``target``: its replacement (``None``: the key is known and unused, see ``why``);
    ``convert``: applied to the tensor after renaming."""

    source: str
    target: str | None
    convert: Callable[[Tensor], Tensor] | None = None
    why: str = ""
    _pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.source))

    def apply(self, key: str) -> str | None:
        """The renamed key, or ``None`` when this rule does not match ``key``."""
        match = self._pattern.match(key)
        if match is None:
            return None
        return "" if self.target is None else match.expand(self.target) + key[match.end():]


@dataclass
class MappedState:
    """``state``: detseg key -> tensor; ``unused``: checkpoint key -> why detseg leaves it out;
    ``unknown``: checkpoint keys no rule matches; ``renamed``: detseg key -> checkpoint key."""

    state: dict[str, Tensor]
    unused: dict[str, str]
    unknown: list[str]
    renamed: dict[str, str]


def map_state_dict(state: dict[str, Tensor], rules: Iterable[Rule]) -> MappedState:
    """Apply ``rules`` to every key of ``state`` (see the module docstring); ``None`` values
    are renamed without conversion (to compare key sets)."""
    rules = list(rules)
    out, unused, unknown, renamed = {}, {}, [], {}
    for key, tensor in state.items():
        for rule in rules:
            new_key = rule.apply(key)
            if new_key is None:
                continue
            if rule.target is None:
                unused[key] = rule.why or "not used by detseg"
            else:
                out[new_key] = rule.convert(tensor) if rule.convert is not None and tensor is not None else tensor
                renamed[new_key] = key
            break
        else:
            unknown.append(key)
    return MappedState(out, unused, unknown, renamed)


def background_first_to_last(tensor: Tensor) -> Tensor:
    """torchvision's class scores put background at index 0; detseg's at the end."""
    return tensor.roll(-1, dims=0)


def drop_background_class(tensor: Tensor) -> Tensor:
    """torchvision's per-class masks include one for background (index 0); detseg's do not."""
    return tensor[1:]


def drop_background_deltas(tensor: Tensor) -> Tensor:
    """torchvision's class-specific box deltas include 4 rows for background; detseg has none."""
    return tensor[4:]


def resnet_rules(source: str) -> tuple[Rule, ...]:
    """torchvision ResNet keys under the ``source`` pattern -> detseg's ResNet backbone,
    whose ``c2`` stage is conv1, bn1, relu, maxpool, layer1."""
    return (
        Rule(source + r"conv1\.", "backbone.stages.c2.0."),
        Rule(source + r"bn1\.", "backbone.stages.c2.1."),
        Rule(source + r"layer1\.", "backbone.stages.c2.4."),
        Rule(source + r"layer2\.", "backbone.stages.c3.0."),
        Rule(source + r"layer3\.", "backbone.stages.c4.0."),
        Rule(source + r"layer4\.", "backbone.stages.c5.0."),
    )
