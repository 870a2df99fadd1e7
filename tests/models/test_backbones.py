import pytest
import torch

import detseg.models  # noqa: F401 - registers backbones
from detseg.config import build
from detseg.errors import ConfigError
from detseg.models.backbones.base import FeatureSpec, FrozenBatchNorm2d, freeze_batch_norm
from detseg.models.necks import FPN
from detseg.registry import BACKBONES


REQUIRED_ARGS = {"timm": {"model": "resnet18d"}}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_output_shape_matches_real_outputs(name):
    backbone = build({"name": name, **REQUIRED_ARGS.get(name, {})}, BACKBONES, "backbone").eval()
    fixed = getattr(backbone, "min_input_size", None)  # SSD300's VGG: nominal strides, valid convs
    height, width = (fixed, fixed) if fixed else (64, 96)
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, height, width))
    shape = backbone.output_shape()
    assert list(features) == list(shape)
    for key, f in features.items():
        assert f.shape[1] == shape[key].channels
        if not fixed:
            assert (64 // shape[key].stride, 96 // shape[key].stride) == tuple(f.shape[-2:])
        else:  # nominal strides of valid/ceil-mode maps round up: SSD300's 38, 19, 10, 5, 3, 1
            assert (-(-fixed // shape[key].stride),) * 2 == tuple(f.shape[-2:]), key
    assert backbone.size_divisibility == max(s.stride for s in shape.values())


def test_pretrained_from_a_local_file(tmp_path):
    missing = tmp_path / "r18.pth"
    with pytest.raises(ConfigError, match=r"r18\.pth.*weights name such as 'imagenet'"):
        build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), missing)
    backbone = build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")
    assert torch.equal(backbone.stages["c3"][0][0].conv1.weight, reference.layer2[0].conv1.weight)
    torch.save({"something": torch.zeros(1)}, missing)
    with pytest.raises(ConfigError, match="does not fit backbone"):
        build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), missing)
    with pytest.raises(ConfigError, match=r"r18\.pth does not fit backbone 'resnet18': missing keys \[\], "
                                          r"unexpected keys"):
        build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), missing)
    with pytest.raises(ConfigError, match=r"does not fit backbone 'resnet18': size mismatch for fc\.weight"):
        build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")
    missing.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=r"cannot read the pretrained weights .*r18\.pth"):
        build({"name": "resnet18", "pretrained": str(missing)}, BACKBONES, "backbone")


def test_frozen_stages_and_frozen_bn():
    backbone = build({"name": "resnet18", "frozen_stages": 2, "frozen_bn": True}, BACKBONES, "backbone")
    assert not any(p.requires_grad for p in backbone.stages["c2"].parameters())
    assert not any(p.requires_grad for p in backbone.stages["c3"].parameters())
    assert all(p.requires_grad for p in backbone.stages["c4"].parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    with pytest.raises(ConfigError, match="unknown out_feature 'c6'"):
        build({"name": "resnet18", "out_features": ["c6"]}, BACKBONES, "backbone")


def test_fpn_outputs_named_by_level_with_shared_channels():
    shape = {"c3": FeatureSpec(16, 8), "c4": FeatureSpec(32, 16), "c5": FeatureSpec(64, 32)}
    fpn = FPN(shape, ["c3", "c4", "c5"], out_channels=8, extra_p6=True)
    out = fpn({"c3": torch.randn(2, 16, 8, 8), "c4": torch.randn(2, 32, 4, 4), "c5": torch.randn(2, 64, 2, 2)})
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p3": (2, 8, 8, 8), "p4": (2, 8, 4, 4), "p5": (2, 8, 2, 2), "p6": (2, 8, 1, 1)}
    assert fpn.output_shape()["p6"] == FeatureSpec(8, 64)
    with pytest.raises(ConfigError, match="did you mean 'c4'"):
        FPN(shape, ["c3", "c44"])


def test_frozen_batch_norm_matches_torchvision_and_eval_batch_norm():
    import torchvision

    bn = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 5, 5)
    ours = freeze_batch_norm(torch.nn.Sequential(bn))[0]
    reference = torchvision.ops.FrozenBatchNorm2d(6)
    reference.load_state_dict(bn.state_dict(), strict=False)
    assert isinstance(ours, FrozenBatchNorm2d) and not list(ours.parameters())
    assert torch.allclose(ours(x), reference(x), atol=1e-5)
    assert torch.allclose(ours(x), bn.eval()(x), atol=1e-5)


def test_ssd300_vgg16_names_the_input_size_it_needs():
    backbone = build({"name": "ssd300_vgg16"}, BACKBONES, "backbone")
    with pytest.raises(ValueError, match=r"at least 300 x 300.*model.input_size.*\(64, 96\)"):
        backbone(torch.zeros(1, 3, 64, 96))


def test_vgg16_fcn_fc_layers_as_convolutions_equal_the_classifier(tmp_path):
    """At 224 px, pool5 is 7x7: the 7x7 fc6 convolution centred on it sees the whole map, so
    the centre cell of fc7 equals torchvision's classifier up to fc7 (after ReLU)."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).eval()
    weights = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), weights)
    backbone = build({"name": "vgg16_fcn", "pretrained": str(weights)}, BACKBONES, "backbone").eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = backbone(image)
        expected = reference.classifier[:5](torch.flatten(reference.avgpool(reference.features(image)), 1))
    assert features["pool5"].shape[-2:] == (7, 7) and features["fc7"].shape[-2:] == (7, 7)
    torch.testing.assert_close(features["fc7"][0, :, 3, 3], expected[0], rtol=1e-4, atol=1e-4)
    assert {name: s.stride for name, s in backbone.output_shape().items()} == {
        "pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32, "fc7": 32}


def test_vgg16_fcn_refuses_weights_without_a_classifier():
    """torchvision's VGG16 IMAGENET1K_FEATURES leaves the classifier NaN; fc6/fc7 would be NaN."""
    from detseg.models.backbones.torchvision_models import fully_convolutional_vgg

    vgg = torch.nn.Module()
    vgg.classifier = torch.nn.Sequential(torch.nn.Linear(512 * 7 * 7, 8), torch.nn.ReLU(), torch.nn.Dropout(),
                                         torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Dropout())
    with torch.no_grad():
        vgg.classifier[0].bias.fill_(float("nan"))
    with pytest.raises(ConfigError, match="NaN in the classifier.*IMAGENET1K_FEATURES"):
        fully_convolutional_vgg(vgg)
