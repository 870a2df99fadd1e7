"""Name -> builder registries, one per component kind.

A config node picks a component by its registry name (``name: shapes``); the rest of the
node are the builder's keyword arguments. Lookups of unknown names fail with the closest
registered names and the full list, so a typo never reaches a constructor.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """A registry lookup of a name that is not registered."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def close_matches(word: str, choices: list[str], n: int = 3) -> list[str]:
    """The registered names nearest to ``word`` (case-insensitive), best first."""
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string when nothing is close."""
    hits = close_matches(word, choices, n=1)
    return f" (did you mean '{hits[0]}'?)" if hits else ""


class Registry:
    """Maps names to classes or builder functions of one kind.

    Args:
        kind: what the registry holds, used in error messages ("backbone", "dataset").
        shared_keys: keys every node of this kind may set besides its builder's arguments,
            name -> type annotation; the code that builds the node handles them.
        supplied_keys: builder arguments that the code building a node of this kind passes
            in and a node never sets, name -> the config key to set instead (a head's
            ``num_classes`` comes from ``model.num_classes``).

    Example:
        >>> DATASETS = Registry("dataset")
        >>> @DATASETS.register("shapes")
        ... class ShapesDataset: ...
    """

    def __init__(self, kind: str, shared_keys: dict[str, Any] | None = None,
                 supplied_keys: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.shared_keys = dict(shared_keys or {})
        self.supplied_keys = dict(supplied_keys or {})
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name``; usable as ``@REG.register("name")``."""

        def add(target: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = target
            return target

        return add(obj) if obj is not None else add

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        """The builder registered as ``name``.

        Raises:
            UnknownNameError (a KeyError): naming ``where`` (a config path), the nearest names and all names.
        """
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            hits = close_matches(str(name), self.names())
            hint = f" Did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""
            raise UnknownNameError(
                f"{prefix}unknown {self.kind} '{name}'.{hint} "
                f"Available: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
EVALUATORS = Registry("evaluator")
BACKBONES = Registry("backbone")
NECKS = Registry("neck")
PROPOSAL_SOURCES = Registry("proposal source")
ROI_HEADS = Registry("roi head", supplied_keys={"num_classes": "model.num_classes"})
DENSE_HEADS = Registry("dense head", supplied_keys={"num_classes": "model.num_classes"})
"""A head's ``num_classes`` is passed by the model builder, from ``model.num_classes``."""
SEG_DECODERS = Registry("segmentation decoder")
MODELS = Registry("model", shared_keys={"init_from": str | None, "init_strict": bool})
"""``init_from`` / ``init_strict``: start from a zoo or detseg checkpoint (detseg.zoo.init)."""
