"""torchvision's FCN and DeepLab v3 against their detseg configs (``configs/model/tv_*.yaml``)
initialised from the same state dict: the same logits, the same label maps."""

import pytest
import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter

from detseg.config import build
from detseg.errors import ConfigError
from detseg.registry import BACKBONES
from detseg.structures import DetSample
from tests.zoo.parity import detseg_model, randomise, samples_of, smooth_image

BUILDERS = ["fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
            "deeplabv3_mobilenet_v3_large"]
SIZES = [(97, 131), (120, 120)]  # not multiples of 16 or 32 (torchvision does not pad); at stride 8 the
# maps (13 x 17, 15 x 15) are wider than the smallest ASPP rate, 12
LOGIT_STD = 10.0  # the logits' spread: far apart, yet small enough for an absolute tolerance
AUX = "auxiliary classifier (training only)"


def normalised(image: torch.Tensor) -> torch.Tensor:
    """``float[3, H, W]``: a uint8 image as torchvision's segmentation transforms normalise it."""
    transforms = torchvision.models.segmentation.FCN_ResNet50_Weights.DEFAULT.transforms()
    return torchvision.transforms.functional.normalize(image.float() / 255, transforms.mean, transforms.std)


def torchvision_state_file(builder: str, tmp_path, scale_on: torch.Tensor | None = None):
    """torchvision's ``builder`` with its auxiliary classifier, in eval mode, and the file its
    state dict is saved in. With ``scale_on`` (``[1, 3, H, W]``, normalised): random weights,
    BatchNorm statistics of four images (the image-level pooling's BatchNorm sees one value
    per image), and the score layer scaled so that the logits of ``scale_on`` spread by
    ``LOGIT_STD``."""
    torch.manual_seed(0)
    model = getattr(torchvision.models.segmentation, builder)(weights=None, weights_backbone=None, aux_loss=True)
    if scale_on is not None:
        calibration = torch.stack([normalised(smooth_image(48, 48, seed)) for seed in range(10, 14)])
        randomise(model, lambda m: m(calibration))
        with torch.no_grad():
            scale = model(scale_on)["out"].std() / LOGIT_STD
            model.classifier[-1].weight /= scale
            model.classifier[-1].bias /= scale
    file = tmp_path / f"{builder}.pth"
    torch.save(model.state_dict(), file)
    return model.eval(), file


@pytest.mark.parametrize("builder", BUILDERS)
def test_logits_and_label_maps_equal_torchvisions(builder, tmp_path):
    samples = samples_of([smooth_image(height, width, seed) for seed, (height, width) in enumerate(SIZES)])
    theirs, file = torchvision_state_file(builder, tmp_path, scale_on=normalised(samples[0].image)[None])
    ours = detseg_model(builder, file)
    assert not ours.init_report.reinitialised and not ours.init_report.not_loaded
    assert set(ours.init_report.unused.values()) == {AUX}
    for sample in samples:  # one at a time: a batch would pad the smaller image
        with torch.no_grad():
            images = ours.preprocessor([sample]).tensor  # fed to both: the same input to the last bit
            logits = ours.logits([sample])
            expected = theirs(images)["out"]
        label_map = ours.predict([sample])[0].labels
        torch.testing.assert_close(images[0], normalised(sample.image), atol=1e-6, rtol=0)
        assert logits.shape == expected.shape == (1, 21, *sample.image_size)
        assert expected.std() > 1  # logits far apart: argmax ties would be down to rounding
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
        agreement = (label_map == expected[0].argmax(0)).float().mean().item()
        assert agreement >= 0.999, f"label maps agree on {agreement:.5f} of the pixels at {sample.image_size}"


@pytest.mark.parametrize(("key", "renamed"), [
    ("classifier.4.weight", "classifier.5.weight"),  # no rule knows it
    ("backbone.3.block.0.0.weight", "backbone.3.block.0.0.kernel"),  # renamed into a key the model lacks
])
def test_a_renamed_key_fails_naming_it(key, renamed, tmp_path):
    _, file = torchvision_state_file("deeplabv3_mobilenet_v3_large", tmp_path)
    state = torch.load(file, weights_only=True)
    state[renamed] = state.pop(key)
    torch.save(state, file)
    with pytest.raises(ConfigError, match=renamed.replace(".", r"\.")):
        detseg_model("deeplabv3_mobilenet_v3_large", file)


def test_fine_tuning_to_three_classes_reinitialises_only_the_classifier(tmp_path):
    theirs, file = torchvision_state_file("deeplabv3_mobilenet_v3_large", tmp_path)
    model = detseg_model("deeplabv3_mobilenet_v3_large", file, ["num_classes=3"])
    assert set(model.init_report.reinitialised) == {"head.weight", "head.bias"}
    assert set(model.init_report.unused.values()) == {AUX} and not model.init_report.not_loaded
    assert all("class count differs" in why for why in model.init_report.reinitialised.values())
    assert torch.equal(model.decoder.fuse[0].weight, theirs.classifier[0].project[0].weight)
    assert model.head.weight.shape == (3, 256, 1, 1)
    generator = torch.Generator().manual_seed(0)
    samples = [DetSample(smooth_image(64, 80, i), i, (64, 80), gt_sem_seg=torch.randint(0, 3, (64, 80),
                                                                                     generator=generator))
               for i in range(2)]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = model.loss(samples)
    sum(losses.values()).backward()
    head_before = model.head.weight.detach().clone()
    optimizer.step()
    assert torch.isfinite(losses["loss_seg"]) and not torch.equal(model.head.weight, head_before)


def test_mobilenet_v3_large_stages_are_torchvisions(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_large(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v3_large.pth")
    backbone = build({"name": "mobilenet_v3_large", "pretrained": str(tmp_path / "mobilenet_v3_large.pth"),
                      "frozen_stages": 2}, BACKBONES, "model.backbone").eval()
    features = reference.features
    ends = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
    x = normalised(smooth_image(64, 96, 0))[None]
    with torch.no_grad():
        ours = backbone(x)
        theirs = IntermediateLayerGetter(features, {str(i): f"layer{i}" for i in ends})(x)
    assert list(ours) == list(theirs) == ["layer0", "layer2", "layer4", "layer7", "layer13", "layer16"]
    for name, feature in theirs.items():
        torch.testing.assert_close(ours[name], feature, atol=0, rtol=0)
    assert [spec.stride for spec in backbone.output_shape().values()] == [2, 4, 8, 16, 32, 32]
    frozen = [not any(p.requires_grad for p in layer.parameters()) for layer in backbone.features]
    assert frozen == [i <= ends[1] for i in range(len(features))]  # stages layer0 and layer2
