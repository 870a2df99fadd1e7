"""torchvision's FCN and DeepLab v3 checkpoints -> detseg's Segmentor.

torchvision's ``backbone`` is an IntermediateLayerGetter over the classification network
(a ResNet's modules, or a MobileNetV3's ``features``); its ``classifier`` ends in the 1x1
score convolution, which is detseg's ``head``. The ``aux_classifier`` (a second FCN head
on an earlier map, a training-time loss) has no counterpart in detseg.
"""

from __future__ import annotations

from detseg.zoo.entries import ZooEntry, register_zoo_entry
from detseg.zoo.keymap import Rule, resnet_rules

RESNET = resnet_rules(r"backbone\.")
MOBILENET = (  # backbone.<i> = features[i]
    Rule(r"backbone\.(\d+)\.", r"backbone.features.\1."),
)
LEAF = r"(?=\w+$)"  # then a tensor name: FCN's classifier.0.weight, not DeepLab's classifier.0.convs.…
FCN_HEAD = (  # FCNHead: conv, BN, ReLU, Dropout, scores
    Rule(rf"classifier\.([01])\.{LEAF}", r"decoder.layers.\1."),
    Rule(rf"classifier\.4\.{LEAF}", "head."),
)
DEEPLAB_HEAD = (  # DeepLabHead: ASPP, conv, BN, ReLU, scores
    Rule(r"classifier\.0\.convs\.([0-3])\.", r"decoder.branches.\1."),  # 1x1 and the three dilated 3x3
    Rule(r"classifier\.0\.convs\.4\.", "decoder.image_pool."),  # AdaptiveAvgPool2d, conv, BN, ReLU
    Rule(r"classifier\.0\.project\.", "decoder.fuse."),  # conv, BN, ReLU, Dropout
    Rule(rf"classifier\.1\.{LEAF}", "decoder.fuse.4."),
    Rule(rf"classifier\.2\.{LEAF}", "decoder.fuse.5."),
    Rule(rf"classifier\.4\.{LEAF}", "head."),
)
AUX = (Rule(r"aux_classifier\.", None, why="auxiliary classifier (training only)"),)

CLASS_LAYERS = ("head.",)
VOC_CLASSES = 21  # background + VOC's 20

for builder, rules in (
    ("fcn_resnet50", RESNET + FCN_HEAD),
    ("fcn_resnet101", RESNET + FCN_HEAD),
    ("deeplabv3_resnet50", RESNET + DEEPLAB_HEAD),
    ("deeplabv3_resnet101", RESNET + DEEPLAB_HEAD),
    ("deeplabv3_mobilenet_v3_large", MOBILENET + DEEPLAB_HEAD),
):
    register_zoo_entry(ZooEntry(builder, f"configs/model/tv_{builder}.yaml", rules + AUX, CLASS_LAYERS, VOC_CLASSES))
