"""torchvision's Faster and Mask R-CNN checkpoints -> detseg's two-stage detector."""

from __future__ import annotations

from detseg.zoo.entries import ZooEntry, register_zoo_entry
from detseg.zoo.keymap import (
    Rule,
    background_first_to_last,
    drop_background_class,
    drop_background_deltas,
    resnet_rules,
)

RESNET_BODY = resnet_rules(r"backbone\.body\.")  # torchvision's IntermediateLayerGetter over a ResNet
MOBILENET_BODY = (  # backbone.body.<i> = features[i] of torchvision's MobileNetV3
    Rule(r"backbone\.body\.(\d+)\.", r"backbone.features.\1."),
)
FPN = (  # torchvision's Conv2dNormActivation blocks: .0 is the conv
    Rule(r"backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"neck.lateral.\1."),
    Rule(r"backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"neck.output.\1."),
)
FPN_WITH_NORM = (  # ... and .1 its BatchNorm (v2)
    Rule(r"backbone\.fpn\.inner_blocks\.(\d+)\.(\d)\.", r"neck.lateral.\1.\2."),
    Rule(r"backbone\.fpn\.layer_blocks\.(\d+)\.(\d)\.", r"neck.output.\1.\2."),
)


def rpn(conv_depth: int) -> tuple[Rule, ...]:
    """detseg's ``proposal_source.conv`` is conv, ReLU, conv, ReLU ..."""
    return (
        *(Rule(rf"rpn\.head\.conv\.{i}\.0\.", f"proposal_source.conv.{2 * i}.") for i in range(conv_depth)),
        Rule(r"rpn\.head\.cls_logits\.", "proposal_source.objectness."),
        Rule(r"rpn\.head\.bbox_pred\.", "proposal_source.deltas."),
    )


BOX_PREDICTOR = (  # torchvision: background is class 0 and has deltas; detseg: last, none
    Rule(r"roi_heads\.box_predictor\.cls_score\.", "roi_head.box_predictor.cls_score.", background_first_to_last),
    Rule(r"roi_heads\.box_predictor\.bbox_pred\.", "roi_head.box_predictor.bbox_pred.", drop_background_deltas),
)
TWO_FC_BOX_HEAD = (
    Rule(r"roi_heads\.box_head\.fc6\.", "roi_head.box_head.fc1."),
    Rule(r"roi_heads\.box_head\.fc7\.", "roi_head.box_head.fc2."),
)
CONV_FC_BOX_HEAD = (  # FastRCNNConvFCHead: 4 x (conv, BN, ReLU), Flatten, Linear, ReLU
    Rule(r"roi_heads\.box_head\.([0-3])\.(\d)\.", r"roi_head.box_head.convs.\1.\2."),
    Rule(r"roi_heads\.box_head\.5\.", "roi_head.box_head.fcs.0."),
)


def mask_branch(norm: bool) -> tuple[Rule, ...]:
    """detseg's ``mask_branch.convs`` is conv, [BN,] ReLU per layer, flat."""
    step = 3 if norm else 2
    return (
        *(Rule(rf"roi_heads\.mask_head\.{i}\.0\.", f"roi_head.mask_branch.convs.{step * i}.") for i in range(4)),
        *(Rule(rf"roi_heads\.mask_head\.{i}\.1\.", f"roi_head.mask_branch.convs.{step * i + 1}.")
          for i in range(4 if norm else 0)),
        Rule(r"roi_heads\.mask_predictor\.conv5_mask\.", "roi_head.mask_branch.deconv."),
        Rule(r"roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_head.mask_branch.predictor.",
             drop_background_class),
    )


BOX_CLASS_LAYERS = ("roi_head.box_predictor.",)
MASK_CLASS_LAYERS = ("roi_head.box_predictor.", "roi_head.mask_branch.predictor.")
COCO_CLASSES = 90  # torchvision's 91 COCO ids, background (0) left out

V1 = RESNET_BODY + FPN + rpn(1) + TWO_FC_BOX_HEAD + BOX_PREDICTOR
V2 = RESNET_BODY + FPN_WITH_NORM + rpn(2) + CONV_FC_BOX_HEAD + BOX_PREDICTOR
MOBILENET = MOBILENET_BODY + FPN + rpn(1) + TWO_FC_BOX_HEAD + BOX_PREDICTOR

for builder, rules, class_layers in (
    ("fasterrcnn_resnet50_fpn", V1, BOX_CLASS_LAYERS),
    ("fasterrcnn_resnet50_fpn_v2", V2, BOX_CLASS_LAYERS),
    ("fasterrcnn_mobilenet_v3_large_fpn", MOBILENET, BOX_CLASS_LAYERS),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", MOBILENET, BOX_CLASS_LAYERS),
    ("maskrcnn_resnet50_fpn", V1 + mask_branch(norm=False), MASK_CLASS_LAYERS),
    ("maskrcnn_resnet50_fpn_v2", V2 + mask_branch(norm=True), MASK_CLASS_LAYERS),
):
    register_zoo_entry(ZooEntry(builder, f"configs/model/tv_{builder}.yaml", rules, class_layers, COCO_CLASSES))
