"""torchvision's Faster / Mask R-CNN checkpoints loaded into detseg's configs give
torchvision's detections (the zoo's parity contract), and fine-tuning starts from them."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detseg.errors import ConfigError
from detseg.structures import Instances
from tests.zoo.parity import assert_same_detections, detseg_model, randomise, samples_of, smooth_image

BUILDERS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]
SIZE = {"min_size": 256, "max_size": 400, "box_detections_per_img": 40}  # small, for a fast test
OVERRIDES = ["resize.min_size=256", "resize.max_size=400", "roi_head.detections_per_image=40"]
IMAGES = [smooth_image(200, 300, seed=1), smooth_image(240, 240, seed=2)]  # one non-square


def training_forward(model):
    """One torchvision training step's forward: sets the BatchNorm statistics."""
    masks = torch.zeros(2, 200, 300, dtype=torch.uint8)
    masks[:, 50:150, 60:200] = 1
    target = {"boxes": torch.tensor([[20.0, 30, 120, 150], [150, 40, 290, 190]]), "labels": torch.tensor([1, 5]),
              "masks": masks}
    model([IMAGES[0].float() / 255], [target])


def torchvision_model(builder: str, **kwargs):
    """torchvision's model with random weights, spread so that scores are distinct."""
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, builder)(weights=None, weights_backbone=None, **kwargs)
    randomise(model, training_forward)
    with torch.no_grad():  # class scores spread over a few units, box deltas moderate
        model.roi_heads.box_predictor.cls_score.weight.mul_(0.5)
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(0.1)
    return model


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    """builder -> (torchvision model, its saved state dict)."""
    made = {}

    def make(builder: str):
        if builder not in made:
            model = torchvision_model(builder, **SIZE)
            path = tmp_path_factory.mktemp(builder) / f"{builder}.pth"
            torch.save(model.state_dict(), path)
            made[builder] = (model, path)
        return made[builder]

    return make


@pytest.mark.parametrize("builder", BUILDERS)
def test_zoo_checkpoint_gives_torchvisions_detections(builder, zoo_file):
    theirs_model, path = zoo_file(builder)
    ours_model = detseg_model(builder, path, OVERRIDES)
    assert not ours_model.init_report.reinitialised and not ours_model.init_report.not_loaded
    with torch.no_grad():
        theirs = theirs_model([image.float() / 255 for image in IMAGES])
        ours = ours_model.predict(samples_of(IMAGES))
    masks = 0.999 if builder.startswith("maskrcnn") else None
    for mine, their in zip(ours, theirs):
        assert isinstance(mine, Instances)
        assert_same_detections(mine, their, box_tol=1e-3, score_tol=1e-4, min_count=20, mask_agreement=masks)


def test_a_renamed_key_is_named(zoo_file, tmp_path):
    _, path = zoo_file("fasterrcnn_mobilenet_v3_large_320_fpn")
    state = torch.load(path, weights_only=True)
    state["rpn.head.cls_logits_renamed.weight"] = state.pop("rpn.head.cls_logits.weight")
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ConfigError, match=r"rpn\.head\.cls_logits_renamed\.weight"):
        detseg_model("fasterrcnn_mobilenet_v3_large_320_fpn", broken)


def test_fine_tuning_reinitialises_exactly_the_class_layers_and_trains(zoo_file):
    _, path = zoo_file("fasterrcnn_mobilenet_v3_large_320_fpn")
    model = detseg_model("fasterrcnn_mobilenet_v3_large_320_fpn", path, ["num_classes=3"])
    report = model.init_report
    assert sorted(report.reinitialised) == ["roi_head.box_predictor.bbox_pred.bias",
                                            "roi_head.box_predictor.bbox_pred.weight",
                                            "roi_head.box_predictor.cls_score.bias",
                                            "roi_head.box_predictor.cls_score.weight"]
    assert all("class count" in why for why in report.reinitialised.values())
    assert not report.not_loaded and not report.unused
    assert "re-initialised" in report.summary() and "roi_head.box_predictor.cls_score" in report.summary()
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()["proposal_source.objectness.weight"], loaded["rpn.head.cls_logits.weight"])
    model.train()
    samples = samples_of(IMAGES)
    for sample in samples:
        sample.gt = Instances(torch.tensor([[20.0, 30, 120, 150]]), torch.tensor([2]), sample.image_size)
    losses = model.loss(samples)
    sum(losses.values()).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01).step()
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_key_that_fits_nowhere_fails_unless_not_strict(zoo_file, tmp_path):
    _, path = zoo_file("fasterrcnn_mobilenet_v3_large_320_fpn")
    state = torch.load(path, weights_only=True)
    state["rpn.head.conv.0.0.weight"] = torch.zeros(256, 256, 1, 1)  # another shape, not class-dependent
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    with pytest.raises(ConfigError, match=r"proposal_source\.conv\.0\.weight"):
        detseg_model("fasterrcnn_mobilenet_v3_large_320_fpn", odd)
    model = detseg_model("fasterrcnn_mobilenet_v3_large_320_fpn", odd, ["init_strict=false"])
    assert list(model.init_report.not_loaded) == ["proposal_source.conv.0.weight"]


@pytest.mark.parametrize("freeze, changes", [(-1, False), (1, True)])
def test_fine_tuning_keeps_the_backbone_frozen_when_asked(zoo_file, tmp_path, freeze, changes):
    from detseg.engine.checkpoint import load_checkpoint
    from detseg.experiment import train_from_config
    from tests.zoo.parity import ROOT

    _, path = zoo_file("fasterrcnn_mobilenet_v3_large_320_fpn")
    run_dir, _ = train_from_config(ROOT / "configs/finetune/faster_rcnn_mobilenet_v3_320.yaml", [
        "data=shapes", f"model.init_from={path}", "train.max_iters=2",
        f"train.freeze_backbone={freeze}", "train.eval_every=0", "train.schedule.warmup_iters=0",
        "data.train.dataset.num_images=4", "data.train.batch_size=2", "data.val.dataset.num_images=2",
        "model.backbone.frozen_bn=false", "model.backbone.frozen_stages=0", f"output_dir={tmp_path / 'run'}"],
        progress=False)
    trained = load_checkpoint(run_dir / "last.pt")["model"]
    zoo = torch.load(path, weights_only=True)
    backbone = {k: v for k, v in trained.items() if k.startswith("backbone.") and "num_batches" not in k}
    same = [torch.equal(v, zoo[k.replace("backbone.features.", "backbone.body.")]) for k, v in backbone.items()]
    assert len(same) > 100
    assert all(same) != changes  # frozen for good: every weight and statistic to the last bit
    head = "roi_head.box_head.fc1.weight"
    assert not torch.equal(trained[head], zoo["roi_heads.box_head.fc6.weight"])  # the rest trained
