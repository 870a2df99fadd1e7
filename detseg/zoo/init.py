"""``model.init_from``: start a model from a torchvision zoo checkpoint or a detseg run.

Sources:
- ``torchvision:<builder>``: the builder's default weights, fetched through torchvision's
  weights API into the torch hub cache (see :mod:`detseg.zoo.weights`);
- a file saved from such a builder (``torch.save(model.state_dict(), PATH)``): its keys
  pick the key map of the builder they fit;
- a detseg checkpoint (``runs/<name>/best.pt``): its inference weights, keys as they are.

Layers whose shape depends on the class count are re-initialised (kept as the model built
them) when the data set has other classes than the checkpoint. Every other key must load:
one that does not is an error naming it, unless ``strict`` is false.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from detseg.checkpoint_format import inference_weights
from detseg.errors import ConfigError
from detseg.zoo.entries import ZooEntry, zoo_entries, zoo_entry
from detseg.zoo.keymap import MappedState, map_state_dict

TORCHVISION_PREFIX = "torchvision:"


@dataclass
class InitReport:
    """What :func:`initialize_from` did, key by key (detseg keys unless said otherwise).

    ``reinitialised``: key -> why; ``unused``: checkpoint key -> why the model does not
    use it; ``not_loaded``: model keys left as built although not class-dependent (only
    with ``strict: false``)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    not_loaded: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """A short block for the training log: counts, then each re-initialised layer."""
        lines = [f"init_from {self.source}: loaded {len(self.loaded)} tensors"]
        for title, items in (("re-initialised", self.reinitialised), ("not loaded (strict: false)", self.not_loaded),
                             ("in the checkpoint, unused", self.unused)):
            if not items:
                continue
            grouped: dict[str, list[str]] = {}
            for key, why in items.items():
                grouped.setdefault(why, []).append(key)
            for why, keys in grouped.items():
                shown = ", ".join(_layers(keys)[:6]) + (" ..." if len(_layers(keys)) > 6 else "")
                lines.append(f"  {title} ({why}): {shown}")
        return "\n".join(lines)


def _layers(keys: list[str]) -> list[str]:
    """``a.b.weight, a.b.bias`` -> ``a.b``: one name per layer, in order."""
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(key.rsplit(".", 1)[0] if "." in key else key, None)
    return list(seen)


def initialize_from(model: nn.Module, source: str, strict: bool = True,
                    class_layers: tuple[str, ...] | None = None) -> InitReport:
    """Load ``source`` into ``model`` (see the module docstring) and say what happened.

    Args:
        model: a freshly built model; its own initialisation stays where nothing loads.
        source: ``torchvision:<builder>``, a torchvision state-dict file or a detseg checkpoint.
        strict: refuse keys that neither load nor are class-dependent.
        class_layers: detseg key prefixes re-initialised on a class-count change (default:
            the zoo entry's, or the model's ``class_layers`` for detseg checkpoints).

    Raises:
        ConfigError: naming the source and the first keys that do not fit.
    """
    entry, state = _read_source(source, model)
    if entry is not None:
        mapped = map_state_dict(state, entry.rules)
        class_layers = entry.class_layers if class_layers is None else class_layers
    else:
        mapped = MappedState(dict(state), {}, [], {k: k for k in state})
        class_layers = tuple(getattr(model, "class_layers", ())) if class_layers is None else class_layers
    return _load(model, mapped, source, strict, class_layers)


def _read_source(source: str, model: nn.Module) -> tuple[ZooEntry | None, dict[str, Tensor]]:
    if source.startswith(TORCHVISION_PREFIX):
        entry = zoo_entry(source[len(TORCHVISION_PREFIX):])
        return entry, _download(entry)
    file = Path(source).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.init_from: no such file {file}; give a file or torchvision:<builder> "
                          f"(supported: {', '.join(sorted(zoo_entries()))})")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.init_from: cannot read {file}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        return None, inference_weights(state)  # a detseg checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"model.init_from: {file} is not a state dict (name -> tensor)")
    return _entry_fitting(state, model), state


def _download(entry: ZooEntry) -> dict[str, Tensor]:
    import torchvision

    from detseg.zoo.weights import fetch_state_dict

    weights = torchvision.models.get_model_weights(entry.builder).DEFAULT
    return fetch_state_dict(weights.url, f"torchvision {entry.builder} {weights.name}")


def _entry_fitting(state: dict[str, Tensor], model: nn.Module) -> ZooEntry:
    """The zoo entry whose key map turns the keys of ``state`` into the model's keys, or the
    one that comes closest (whose mismatches :func:`_load` then names)."""
    keys = dict.fromkeys(k for k in state if not k.endswith("num_batches_tracked"))
    own = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    best, best_misses = None, None
    for entry in zoo_entries().values():
        mapped = map_state_dict(keys, entry.rules)
        misses = len(mapped.unknown) + len(own.symmetric_difference(mapped.state))
        if best_misses is None or misses < best_misses:
            best, best_misses = entry, misses
    return best


def _show(keys: list[str], n: int = 5) -> str:
    return ", ".join(f"'{k}'" for k in keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _load(model: nn.Module, mapped: MappedState, source: str, strict: bool,
          class_layers: tuple[str, ...]) -> InitReport:
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = InitReport(source, unused=dict(mapped.unused))
    for key in mapped.unknown:
        report.unused[key] = "no rule of the key map knows it"
    errors = [f"checkpoint key '{k}' is unknown to the key map" for k in mapped.unknown]
    to_load: dict[str, Tensor] = {}

    def class_dependent(key: str) -> bool:
        return any(key.startswith(prefix) for prefix in class_layers)

    for key, tensor in mapped.state.items():
        origin = mapped.renamed.get(key, key)
        if key.endswith("num_batches_tracked"):
            continue
        if key not in own:
            report.unused[origin] = "the model has no such layer"
            errors.append(f"checkpoint key '{origin}' -> '{key}' is not in the model")
        elif tuple(tensor.shape) != tuple(own[key].shape):
            why = (f"shape {tuple(tensor.shape)} in the checkpoint, {tuple(own[key].shape)} in the model")
            if class_dependent(key):  # the weight and the bias say the same, so they group as one layer
                report.reinitialised[key] = (f"class count differs: {tensor.shape[0]} outputs in the checkpoint, "
                                             f"{own[key].shape[0]} in the model")
            else:
                report.not_loaded[key] = why
                errors.append(f"'{key}' (checkpoint '{origin}'): {why}")
        else:
            to_load[key] = tensor
    for key in own:
        if key in to_load or key in report.reinitialised or key in report.not_loaded:
            continue
        if class_dependent(key):
            report.reinitialised[key] = "not in the checkpoint"
        else:
            report.not_loaded[key] = "not in the checkpoint"
            errors.append(f"model key '{key}' is not in the checkpoint")
    if errors and strict:
        raise ConfigError(f"model.init_from {source}: {len(errors)} key(s) do not fit: "
                          + "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
                          + ". Set model.init_strict=false to load what fits and keep the rest as built.")
    with torch.no_grad():
        own_all = model.state_dict()
        for key, tensor in to_load.items():
            own_all[key].copy_(tensor)
    report.loaded = list(to_load)
    return report
