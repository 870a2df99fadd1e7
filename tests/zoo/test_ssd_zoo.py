"""torchvision's SSD300 and SSDLite320 checkpoints loaded into detseg's configs give
torchvision's detections (the zoo's parity contract), and fine-tuning starts from them."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from detseg.errors import ConfigError
from detseg.structures import Instances
from tests.zoo.parity import assert_same_detections, detseg_model, randomise, samples_of, smooth_image

BUILDERS = ["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"]
IMAGES = [smooth_image(240, 320, seed=1), smooth_image(200, 200, seed=2)]  # one non-square
LAST_CONV = {"ssd300_vgg16": "{}", "ssdlite320_mobilenet_v3_large": "{}.1"}  # of predictor {i}


@torch.no_grad()
def calibrate(model, class_std: float = 2.0, box_std: float = 1.0) -> None:
    """One forward of torchvision's backbone and head on the test images (which sets the
    BatchNorm statistics, see ``randomise``), then each map's last class and box convolution
    scaled so that its outputs have these standard deviations: class scores spread over many
    classes and distinct (randomised VGG logits are in the hundreds: every score 0 or 1), box
    deltas moderate (decoded boxes stay in the image, where detseg, unlike torchvision, drops
    empty ones)."""
    def last_conv(predictor):
        return predictor if isinstance(predictor, torch.nn.Conv2d) else predictor[-1]

    targets = {last_conv(p): class_std for p in model.head.classification_head.module_list}
    targets.update({last_conv(p): box_std for p in model.head.regression_head.module_list})
    stds = {}
    hooks = [conv.register_forward_hook(lambda conv, _, out: stds.__setitem__(conv, out.std())) for conv in targets]
    batch, _ = model.transform([image.float() / 255 for image in IMAGES])
    model.head(list(model.backbone(batch.tensors).values()))
    for hook in hooks:
        hook.remove()
    for conv, target in targets.items():
        conv.weight.mul_(target / stds[conv])
        conv.bias.mul_(target / stds[conv])


@pytest.fixture(scope="module", params=BUILDERS)
def zoo(request, tmp_path_factory):
    """``(builder, torchvision model with random weights spread wide, its saved state dict)``."""
    builder = request.param
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, builder)(weights=None, weights_backbone=None)
    randomise(model, calibrate)
    path = tmp_path_factory.mktemp(builder) / f"{builder}.pth"
    torch.save(model.state_dict(), path)
    return builder, model, path


def test_zoo_checkpoint_gives_torchvisions_detections(zoo):
    builder, theirs_model, path = zoo
    ours_model = detseg_model(builder, path)
    report = ours_model.init_report
    assert not report.reinitialised and not report.not_loaded and not report.unused
    with torch.no_grad():
        theirs = theirs_model([image.float() / 255 for image in IMAGES])
        ours = ours_model.predict(samples_of(IMAGES))
    for mine, their, image in zip(ours, theirs, IMAGES):
        assert mine.image_size == tuple(image.shape[1:])
        assert_same_detections(mine, their, box_tol=1e-3, score_tol=1e-4, min_count=20)
        assert len(their["labels"].unique()) > 5  # many classes: the background reordering matters


def test_a_renamed_key_is_named(zoo, tmp_path):
    builder, _, path = zoo
    state = torch.load(path, weights_only=True)
    key = next(iter(state))  # the first VGG / MobileNet convolution
    renamed = key.replace("weight", "kernel")
    state[renamed] = state.pop(key)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ConfigError, match=re.escape(renamed)):
        detseg_model(builder, broken)


def test_fine_tuning_reinitialises_exactly_the_class_convs_and_trains(zoo):
    builder, _, path = zoo
    model = detseg_model(builder, path, ["num_classes=3"])
    report = model.init_report
    last = [LAST_CONV[builder].format(i) for i in range(6)]
    assert sorted(report.reinitialised) == sorted(f"head.classifiers.{conv}.{p}" for conv in last
                                                  for p in ("weight", "bias"))
    assert all("class count" in why for why in report.reinitialised.values())
    assert not report.not_loaded and not report.unused
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()[f"head.regressors.{last[0]}.weight"],
                       loaded[f"head.regression_head.module_list.{last[0]}.weight"])
    model.train()
    samples = samples_of(IMAGES)
    for sample in samples:
        sample.gt = Instances(torch.tensor([[20.0, 30, 120, 150], [100, 20, 190, 180]]), torch.tensor([2, 0]),
                              sample.image_size)
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.loss(samples)
    sum(losses.values()).backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
