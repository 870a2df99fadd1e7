"""The RPN's objectness and box deltas in training (1x1 convolutions as matrix products) equal
the convolutions' outputs of inference, in the anchors' (row, column, anchor) order."""

import torch

from detseg.models.backbones.base import FeatureSpec
from detseg.models.heads.rpn import RPN


def test_training_and_inference_heads_agree():
    torch.manual_seed(0)
    shape = {"p3": FeatureSpec(16, 8), "p4": FeatureSpec(16, 16)}
    rpn = RPN(shape, ["p3", "p4"], [[16, 24], [32, 48]])
    for layer in (rpn.objectness, rpn.deltas):  # weights well away from the init's near-zero values
        torch.nn.init.normal_(layer.weight)
        torch.nn.init.normal_(layer.bias)
    features = {"p3": torch.randn(2, 16, 8, 10), "p4": torch.randn(2, 16, 4, 5)}
    trained = rpn(features, (64, 80))
    with torch.no_grad():
        inferred = rpn(features, (64, 80))
    for a, b in zip(trained.objectness + trained.deltas, inferred.objectness + inferred.deltas):
        assert a.shape == b.shape and a.requires_grad and not b.requires_grad
        torch.testing.assert_close(a.detach(), b, atol=1e-5, rtol=1e-5)
    # by hand: anchor a at row i, column j of p3 reads the objectness conv's channel a there
    t = rpn.conv(features["p3"])
    manual = torch.einsum("bchw,ac->bhwa", t, rpn.objectness.weight[:, :, 0, 0]) + rpn.objectness.bias
    torch.testing.assert_close(trained.objectness[0].detach(), manual.reshape(2, -1).detach(), atol=1e-5, rtol=1e-5)
    assert len(trained.anchors[0]) == trained.objectness[0].shape[1] == 8 * 10 * 6
