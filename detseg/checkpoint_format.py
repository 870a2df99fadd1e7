"""What a detseg checkpoint holds, for the code that reads one without the training engine
(``model.init_from`` in the zoo): ``model`` (the trained weights), ``ema`` (with
``weights``: their moving average, when ``train.ema`` was on), ``config``, ``meta`` and the
training state. :mod:`detseg.engine.checkpoint` writes and loads them."""

from __future__ import annotations

from typing import Any


def inference_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint predicts with: the EMA of the weights when training kept one
    (``train.ema``), else the trained weights."""
    return state["ema"]["weights"] if "ema" in state else state["model"]
