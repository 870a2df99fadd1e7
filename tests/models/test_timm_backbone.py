"""timm backbones: channels and strides from feature_info, weights from a local file only,
and a detector built on one."""

import pytest
import torch

timm = pytest.importorskip("timm")

from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.backbones import TimmBackbone
from detseg.structures import DetSample, Instances


@pytest.mark.parametrize("model", ["resnet18d", "mobilenetv3_small_100", "efficientnet_b0"])
def test_features_named_by_stride_with_feature_info_channels(model):
    backbone = TimmBackbone(model).eval()
    info = timm.create_model(model, features_only=True).feature_info
    shape = backbone.output_shape()
    assert [s.channels for s in shape.values()] == info.channels()
    assert [s.stride for s in shape.values()] == info.reduction()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 64, 96))
    for name, f in features.items():
        assert name == f"c{shape[name].stride.bit_length() - 1}"
        assert tuple(f.shape[1:]) == (shape[name].channels, 64 // shape[name].stride, 96 // shape[name].stride)


def test_pretrained_from_a_local_file_equals_the_classification_model(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("resnet18d").eval()
    path = tmp_path / "resnet18d.pth"
    torch.save(classifier.state_dict(), path)
    backbone = TimmBackbone("resnet18d", out_features=["c5"], pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["c5"], classifier.forward_features(x))
    with pytest.raises(ConfigError, match=r"missing\.pth.*never downloads"):
        TimmBackbone("resnet18d", pretrained=str(tmp_path / "missing.pth"))
    torch.save(timm.create_model("resnet34d").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        TimmBackbone("resnet18d", pretrained=str(tmp_path / "r34.pth"))


def test_unknown_model_and_feature_are_named():
    with pytest.raises(ConfigError, match="resnet18dd.*did you mean"):
        TimmBackbone("resnet18dd")
    with pytest.raises(ConfigError, match="c9"):
        TimmBackbone("resnet18d", out_features=["c9"])


def test_faster_rcnn_on_a_timm_backbone_trains_and_predicts():
    cfg = {"name": "faster_rcnn", "backbone": {"name": "timm", "model": "resnet18d", "out_features": ["c3", "c4", "c5"]},
           "neck": {"name": "fpn", "in_features": ["c3", "c4", "c5"], "out_channels": 32},
           "proposal_source": {"name": "rpn", "in_features": ["p3", "p4", "p5"],
                               "anchor_sizes": [[16], [32], [64]], "aspect_ratios": [1.0]},
           "roi_head": {"name": "standard", "in_features": ["p3", "p4", "p5"], "num_classes": 2, "fc_dim": 64}}
    model = build_model(cfg)
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    gt = Instances(torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([1]), (64, 64))
    losses = model.loss([DetSample(image=image, image_id=1, orig_size=(64, 64), gt=gt)])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        assert isinstance(model.predict([DetSample(image=image, image_id=1, orig_size=(64, 64))])[0], Instances)
