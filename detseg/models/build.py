"""Build a model from the ``model`` node of a config."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from detseg.config import build, to_plain
from detseg.errors import ConfigError
from detseg.registry import MODELS


def build_model(node: Any, initialize: bool = True) -> nn.Module:
    """The model named by ``node.name`` with the node's keyword arguments.

    Args:
        initialize: load the initial weights the node names (``init_from``, a backbone's
            ``pretrained``). False when a checkpoint's weights replace them anyway (evaluation,
            inference, resume), so that nothing is read or downloaded for nothing.

    The model built with ``init_from`` carries the :class:`~detseg.zoo.init.InitReport` as
    ``model.init_report``.
    """
    node = to_plain(node)
    if not initialize:
        node = without_initial_weights(node)
    model = build(node, MODELS, "model")
    if node.get("init_from"):
        from detseg.zoo.init import initialize_from

        model.init_report = initialize_from(model, node["init_from"], strict=node.get("init_strict", True))
    return model


def without_initial_weights(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` without ``init_from`` and with its backbone's ``pretrained`` unset."""
    node = {k: v for k, v in node.items() if k not in ("init_from", "init_strict")}
    backbone = node.get("backbone")
    if isinstance(backbone, dict) and backbone.get("pretrained"):
        node["backbone"] = {**backbone, "pretrained": None}
    return node


NUM_CLASSES_HELP = ("the number of classes the model predicts, i.e. the length of the data set's class "
                    "list: object classes without background for a detector (dataset.class_names), "
                    "label values with background for a segmenter (dataset.semantic_class_names)")


def require_num_classes(num_classes: int | None) -> int:
    """``model.num_classes``, refused when unset: a model built with its data set gets the
    data set's count (:func:`detseg.experiment.build_model_for`); without one it must be set."""
    if num_classes is None:
        raise ConfigError(f"model.num_classes is not set: set it to {NUM_CLASSES_HELP}; a model built "
                          f"with its data set (training, evaluation) takes the data set's count")
    return num_classes


def with_num_classes_lifted(node: dict[str, Any]) -> dict[str, Any]:
    """A model node saved before ``model.num_classes`` was the one place (a checkpoint's config
    with ``head.num_classes`` or ``roi_head.num_classes``), with that count moved up to
    ``num_classes``; any other node unchanged."""
    node = dict(node)
    for key in ("head", "roi_head"):
        head = node.get(key)
        if isinstance(head, dict) and "num_classes" in head:
            node[key] = {k: v for k, v in head.items() if k != "num_classes"}
            node.setdefault("num_classes", head["num_classes"])
    return node


def builds_segmenter(name: str) -> bool:
    """Whether the model registered as ``name`` is a :class:`~detseg.models.base.Segmenter`
    (from its builder's return annotation, or its class), before building it."""
    import typing

    from detseg.models.base import Segmenter

    builder = MODELS.get(name, where="model.name")
    if isinstance(builder, type):
        return issubclass(builder, Segmenter)
    returned = typing.get_type_hints(builder).get("return")
    return isinstance(returned, type) and issubclass(returned, Segmenter)


def build_trunk(backbone: Any, neck: Any | None) -> tuple[Any, Any | None, dict]:
    """Backbone and optional neck from their config nodes, and the feature shapes
    (``{name: FeatureSpec}``) that the heads on top of them are built for."""
    from detseg.registry import BACKBONES, NECKS

    backbone_module = build(backbone, BACKBONES, "model.backbone")
    shape = backbone_module.output_shape()
    neck_module = None
    if neck is not None:
        neck_module = build(neck, NECKS, "model.neck", input_shape=shape)
        shape = neck_module.output_shape()
    return backbone_module, neck_module, shape


def register_family_member(registry: Any, name: str, builder: Callable[..., Any],
                           problem: Callable[[dict[str, Any]], str | None]) -> None:
    """Register ``builder`` as model ``name``, refusing nodes that are not what the name
    says: ``problem(kwargs)`` returns why (e.g. a YOLO head under ``name: ssd``) or None."""

    @functools.wraps(builder)
    def member(**kwargs: Any) -> Any:
        why = problem(kwargs)
        if why:
            raise ConfigError(f"model: name '{name}' {why}")
        return builder(**kwargs)

    registry.register(name, member)


def node_name(node: Any) -> str | None:
    """The ``name`` of a component node (a dict), or None."""
    return node.get("name") if isinstance(node, dict) else None
