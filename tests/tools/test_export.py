"""ONNX export with an onnxruntime parity check on the shapes set (briefly trained Faster and
Mask R-CNN, SSD, YOLO and YOLO v1; untrained U-Net, FCN, FC-DenseNet), segmenters at any image
size, detectors at other sizes, TorchScript, the CLI, and a broken export that the parity check
must catch; then runtime onnxruntime (the Predictor and tools/eval.py on the exported graph)
against runtime torch, and tools/eval.py --precision bf16 against fp32."""

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime  # noqa: F401 - a dev dependency: missing, the suite fails rather than skips
import pytest
import torch

from detseg.deploy import (
    ExportableModel,
    ExportError,
    check_input_shape,
    detection_difference,
    export_model,
    load_exported,
    parity_check,
)
from detseg.experiment import (
    build_evaluator,
    build_model_for,
    build_split,
    load_experiment,
    train_from_config,
)
from detseg.inference import Predictor
from detseg.inference.optimize import choose_plan, cpu_capabilities

ROOT = Path(__file__).resolve().parents[2]
SPREAD = 3.0
SEGMENTERS = ["unet/shapes", "fcn/fcn8s_shapes", "tiramisu/fcdensenet56_shapes"]
ONE_STAGE_IMAGES = 8
ONE_STAGE_RUNS = {  # family: (iterations, its own overrides); AP 0.5-0.85 here with seeds 0-3
    "ssd/shapes": (60, []),
    "yolo/shapes": (150, []),
    # At the default noobj weight 0.5, Adam drives every confidence into the sigmoid's flat
    # tail within 20 iterations on so few images, and nothing is detected for 150 more.
    "yolo/v1_shapes": (75, ["model.head.lambda_noobj=0.1"]),
}


def model_and_images(config: str, num_images: int = 4):
    cfg = load_experiment(ROOT / "configs" / f"{config}.yaml", [f"data.val.dataset.num_images={num_images}"])
    dataset = build_split(cfg, "val")
    torch.manual_seed(0)
    model = build_model_for(cfg, dataset).eval()
    # Untrained, every score is about 1 / classes and which of the near-ties NMS keeps is down
    # to float rounding; weights drawn wider make the scores distinct, as training does.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(SPREAD)
    return model, [dataset[i] for i in range(len(dataset))], lambda: build_evaluator(cfg, dataset)


class TrainedRun(NamedTuple):
    name: str  # config, e.g. faster_rcnn/shapes
    model: torch.nn.Module
    samples: list
    make_evaluator: Callable
    overrides: list[str]  # with the config: what trained it and what evaluates it
    checkpoint: Path


@pytest.fixture(scope="module", params=list(ONE_STAGE_RUNS))
def trained_one_stage(request, tmp_path_factory) -> TrainedRun:
    """A one-stage detector (SSD, YOLO, YOLO v1) trained for a few seconds, seeded, on the
    first ``ONE_STAGE_IMAGES`` training images, with those images as its validation split.
    The parity check needs confident,
    well-placed detections on the images it runs, not generalisation, and fitting 8 images
    reaches COCO AP 0.5 and more in a tenth of the iterations a held-out split needs."""
    config = request.param
    iterations, own = ONE_STAGE_RUNS[config]
    overrides = [f"output_dir={tmp_path_factory.mktemp('run')}", f"train.max_iters={iterations}",
                 "train.eval_every=0", "train.best_metric=null", "train.optimizer.name=adam",
                 "train.optimizer.lr=0.001", "train.schedule.name=constant", "train.schedule.warmup_iters=10",
                 f"data.train.dataset.num_images={ONE_STAGE_IMAGES}", "data.val.dataset.split=train",
                 f"data.val.dataset.num_images={ONE_STAGE_IMAGES}", "data.check=off", "seed=0", "device=cpu",
                 *own]
    path = ROOT / "configs" / f"{config}.yaml"
    # One thread: the same float operations in the same order on any machine, and on 2 busy
    # cores (other jobs running) SSD's 60 iterations took 8 s on one thread, 24-113 s on two.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir, _ = train_from_config(path, overrides, progress=False)
    finally:
        torch.set_num_threads(threads)
    cfg = load_experiment(path, overrides)
    dataset = build_split(cfg, "val")
    model = build_model_for(cfg, dataset)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    model.eval()
    return TrainedRun(config, model, [dataset[i] for i in range(len(dataset))], lambda: build_evaluator(cfg, dataset),
                      overrides, run_dir / "last.pt")


def test_one_stage_onnx_export_matches_pytorch_when_trained(trained_one_stage, tmp_path):
    """Trained SSD, YOLO and YOLO v1 exports give the PyTorch detections (at least 20 of
    them, boxes and scores within 1e-3) and the same COCO AP (@[.5:.95]), above 0.3 on
    both sides: untrained, both sides had AP 0 and only a couple of boxes to compare."""
    config, model, samples, make_evaluator, *_ = trained_one_stage
    path = export_model(model, samples[0].image, "onnx", tmp_path / "model.onnx")
    report = parity_check(model, path, samples, make_evaluator, tolerance=1e-3)
    print(f"{config}: {report}")
    assert report.metric == "AP"
    assert report.detections >= 20, report
    assert report.max_output_diff <= 1e-3
    assert report.torch_metric > 0.3 and report.exported_metric > 0.3, report
    assert report.exported_metric == pytest.approx(report.torch_metric, abs=1e-3)


@pytest.mark.parametrize("config", SEGMENTERS)
def test_segmenter_onnx_export_matches_pytorch(config, tmp_path):
    """Untrained segmenters (weights drawn wider, so no class ties) give the same label
    maps and mIoU exported; the mIoU must be nonzero (0.03-0.1 with seed 0), so that the
    metric comparison is not 0 against 0."""
    model, samples, make_evaluator = model_and_images(config)
    path = export_model(model, samples[0].image, "onnx", tmp_path / "model.onnx")
    report = parity_check(model, path, samples, make_evaluator, tolerance=1e-3)
    assert report.max_output_diff <= 1e-3
    assert report.torch_metric > 0, report
    assert report.exported_metric == pytest.approx(report.torch_metric, abs=1e-3)


@pytest.fixture(scope="module", params=["faster_rcnn/shapes", "mask_rcnn/shapes"])
def trained_two_stage(request, tmp_path_factory) -> TrainedRun:
    """Faster or Mask R-CNN briefly trained, so that the RPN's proposals survive NMS in numbers
    that differ from image to image."""
    name = request.param
    overrides = [f"output_dir={tmp_path_factory.mktemp('run')}", "train.max_iters=60", "train.eval_every=0",
                 "train.best_metric=null", "train.schedule.warmup_iters=20", "data.train.batch_size=4",
                 "data.val.dataset.num_images=12", "data.check=off", "model.proposal_source.nms_threshold=0.2"]
    path = ROOT / "configs" / f"{name}.yaml"
    run_dir, _ = train_from_config(path, overrides, progress=False)
    cfg = load_experiment(path, overrides)
    dataset = build_split(cfg, "val")
    model = build_model_for(cfg, dataset)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    model.eval()
    return TrainedRun(name, model, [dataset[i] for i in range(len(dataset))], lambda: build_evaluator(cfg, dataset),
                      overrides, run_dir / "last.pt")


def test_two_stage_onnx_export_matches_pytorch_where_proposal_counts_differ(trained_two_stage, tmp_path):
    """A graph that froze the example's proposal counts fails on the other images. Mask
    R-CNN's masks must match too (as pixels, and through mask AP)."""
    name, model, samples, make_evaluator, *_ = trained_two_stage
    with torch.no_grad():
        counts = set()
        for s in samples:
            batch, features = model.features([s])
            raw = model.proposal_source(features, batch.padded_size)
            counts.add(len(model.proposal_source.predict(raw, batch.samples)[0]))
    assert len(counts) > 1, counts
    path = export_model(model, samples[0].image, "onnx", tmp_path / "model.onnx")
    report = parity_check(model, path, samples, make_evaluator, tolerance=1e-3)
    assert report.max_output_diff <= 1e-3
    assert report.exported_metric == pytest.approx(report.torch_metric, abs=1e-3)
    if name == "mask_rcnn/shapes":
        assert report.mask_metrics is not None and report.mask_metrics[0] > 0
        assert report.mask_metrics[1] == pytest.approx(report.mask_metrics[0], abs=1e-3)


def test_models_with_proposals_from_outside_the_network_are_refused_by_name(tmp_path):
    from detseg.config import load_node, to_plain
    from detseg.models import build_model

    model = build_model({**to_plain(load_node(ROOT / "configs" / "model" / "rcnn_tiny.yaml")), "num_classes": 3})
    with pytest.raises(ExportError, match="TwoStageDetector takes its proposals from selective search"):
        export_model(model, torch.zeros(3, 64, 64, dtype=torch.uint8), "onnx", tmp_path / "rcnn.onnx")


def check_larger_image_maps_back(model, image, fmt, folder):
    """On ``image`` enlarged 2x by pixel repetition, the letterbox (bilinear, scale 1/2) gives
    back ``image`` exactly, so the export must give the image's detections with boxes x2 and
    masks enlarged 2x by repetition."""
    path = export_model(model, image, fmt, folder / f"model.{fmt}")
    enlarged = image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    with torch.no_grad():
        boxes, scores, labels, *masks = ExportableModel(model)(image)
    got_boxes, got_scores, got_labels, *got_masks = load_exported(path)(enlarged)
    assert len(boxes) > 0 and torch.equal(got_labels, labels)
    torch.testing.assert_close(got_boxes, 2 * boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(got_scores, scores, atol=1e-4, rtol=0)
    if masks:
        height, width = enlarged.shape[1:]
        assert got_masks[0].shape == (len(boxes), height, width)
        expected = masks[0].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        assert (got_masks[0] != expected).float().mean() < 1e-3
    return path


def check_other_sizes(model, path, image):
    """Images of other sizes and aspect ratios give PyTorch's detections of the same
    letterboxed image, in the image's own pixels (masks at its size)."""
    run, reference = load_exported(path), ExportableModel(model, network_size=tuple(image.shape[1:]))
    for height, width in [(96, 160), (200, 150)]:
        resized = torch.nn.functional.interpolate(image[None].float(), size=(height, width))[0].to(torch.uint8)
        with torch.no_grad():
            expected = reference(resized)
        got = run(resized)
        assert detection_difference(expected, got) <= 1e-3, (height, width)
        assert len(got[0]) == 0 or (got[0][:, 0::2].max() <= width and got[0][:, 1::2].max() <= height)
        if len(got) == 4:
            assert got[3].shape[1:] == (height, width)


def test_a_fixed_size_export_refuses_another_size_naming_both(tmp_path):
    """Only a segmenter predicting by sliding window (its window grid is traced) has one size."""
    with pytest.raises(ExportError, match=r"exported for images of shape \[3, 128, 128\].*got \[3, 96, 160\]"):
        check_input_shape(tmp_path / "model.onnx", [3, 128, 128], torch.zeros(3, 96, 160, dtype=torch.uint8))
    check_input_shape(tmp_path / "model.onnx", [3, None, None], torch.zeros(3, 96, 160, dtype=torch.uint8))


def test_a_one_stage_export_takes_any_image_size(trained_one_stage, tmp_path):
    _, model, samples, *_ = trained_one_stage
    path = check_larger_image_maps_back(model, samples[0].image, "onnx", tmp_path)
    check_other_sizes(model, path, samples[0].image)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_two_stage_export_takes_any_image_size(trained_two_stage, fmt, tmp_path):
    _, model, samples, *_ = trained_two_stage
    path = check_larger_image_maps_back(model, samples[0].image, fmt, tmp_path)
    check_other_sizes(model, path, samples[0].image)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("config", ["unet/shapes", "fcn/fcn8s_shapes"])
def test_a_segmenter_export_takes_any_image_size(config, fmt, tmp_path):
    model, samples, _ = model_and_images(config, 1)
    path = export_model(model, samples[0].image, fmt, tmp_path / f"model.{fmt}")
    run = load_exported(path)
    for height, width in [(96, 160), (77, 91)]:  # a stride multiple, and not
        image = torch.nn.functional.interpolate(samples[0].image[None].float(), size=(height, width))[0]
        image = image.to(torch.uint8)
        expected = ExportableModel(model)(image)
        (got,) = run(image)
        assert got.shape == (height, width)
        assert torch.equal(got, expected)


def test_broken_export_fails_the_parity_check(tmp_path):
    model, samples, make_evaluator = model_and_images("unet/shapes")
    broken = copy.deepcopy(model)
    broken.preprocessor.unit_mean += 40.0 / 255  # a wrong normalisation baked into the graph
    path = export_model(broken, samples[0].image, "onnx", tmp_path / "broken.onnx")
    with pytest.raises(ExportError, match="does not reproduce the PyTorch model"):
        parity_check(model, path, samples, make_evaluator)


def test_export_cli_torchscript_with_parity(tmp_path):
    config = ROOT / "configs" / "unet" / "shapes.yaml"
    overrides = [f"output_dir={tmp_path / 'run'}", "train.max_iters=2", "train.eval_every=0",
                 "data.train.dataset.num_images=4", "data.val.dataset.num_images=3", "device=cpu"]
    run_dir, _ = train_from_config(config, overrides, progress=False)
    out = tmp_path / "unet.pt"
    result = subprocess.run([sys.executable, "tools/export.py", "--checkpoint", str(run_dir / "last.pt"),
                             "--format", "torchscript", "--out", str(out)],
                            check=False, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "parity on 3 images" in result.stdout and out.is_file()


# -- runtime onnxruntime: the Predictor and tools/eval.py -----------------------------------


def resized(image: torch.Tensor, height: int, width: int) -> np.ndarray:
    """``uint8[3, H, W]`` -> an ``H' x W'`` RGB array, as a user's photo of another size."""
    out = torch.nn.functional.interpolate(image[None].float(), size=(height, width), mode="bilinear")[0]
    return out.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def test_predictor_on_onnxruntime_gives_the_torch_detections_at_two_sizes(trained_two_stage, tmp_path):
    """Each image size gets its own checked graph (cached, reused by the next Predictor), and
    the detections equal those of runtime torch (fp32): boxes within 1e-3 px, scores within
    1e-4, the same labels, and Mask R-CNN's masks on all but 1e-3 of the pixels."""
    name, model, samples, *_ = trained_two_stage
    images = [samples[0].image.permute(1, 2, 0).numpy(), resized(samples[1].image, 96, 160)]
    torch_side = Predictor(model, {}, [], precision="fp32")
    ort_side = Predictor(model, {}, [], runtime="onnxruntime", cache_dir=tmp_path)
    assert ort_side.plan.describe().startswith("inference: onnxruntime ")
    for image, expected, got in zip(images, torch_side.predict_batch(images, batch_size=1),
                                    ort_side.predict_batch(images)):
        assert len(expected) > 0 and got.image_size == expected.image_size == image.shape[:2]
        assert torch.equal(got.labels, expected.labels)
        torch.testing.assert_close(got.boxes.tensor, expected.boxes.tensor, atol=1e-3, rtol=0)
        torch.testing.assert_close(got.scores, expected.scores, atol=1e-4, rtol=0)
        if name == "mask_rcnn/shapes":
            assert (got.masks != expected.masks).float().mean() <= 1e-3
    graphs = sorted(p.name.split("-", 1)[1] for p in tmp_path.glob("*.onnx"))
    assert graphs == ["128x128.onnx", "96x160.onnx"]
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")}
    again = Predictor(model, {}, [], runtime="onnxruntime", cache_dir=tmp_path)(images[1])
    assert torch.equal(again.boxes.tensor, got.boxes.tensor)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")} == stamps  # reused, not exported again


@pytest.mark.parametrize("config", ["unet/shapes", "fcn/fcn8s_shapes"])
def test_segmenter_predictor_on_onnxruntime_gives_the_torch_labels(config, tmp_path):
    model, samples, _ = model_and_images(config, 1)
    images = [samples[0].image.permute(1, 2, 0).numpy(), resized(samples[0].image, 77, 91)]
    # batch 1, as onnxruntime runs: in one batch the smaller image would be padded to the larger
    expected = Predictor(model, {}, [], precision="fp32").predict_batch(images, batch_size=1)
    got = Predictor(model, {}, [], runtime="onnxruntime", cache_dir=tmp_path).predict_batch(images)
    for mine, theirs, image in zip(got, expected, images):
        assert mine.labels.shape == image.shape[:2] and torch.equal(mine.labels, theirs.labels)
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # one graph takes any size


def eval_command(run: TrainedRun, tmp_path: Path, *options: str) -> dict:
    from detseg.commands.eval import main

    out = tmp_path / f"metrics{'_'.join(options)}.json"
    code = main([str(ROOT / "configs" / f"{run.name}.yaml"), "--checkpoint", str(run.checkpoint), *run.overrides,
                 "--out", str(out), *options])
    assert code == 0
    return json.loads(out.read_text())


def test_eval_on_onnxruntime_gives_the_torch_ap(trained_one_stage, tmp_path, capsys):
    """SSD, YOLO and YOLO v1 fitted to 8 images (AP above 0.3 on them): the same AP through
    the exported graph, which was cached beside the checkpoint."""
    torch_side = eval_command(trained_one_stage, tmp_path, "--precision", "fp32")
    ort_side = eval_command(trained_one_stage, tmp_path, "--runtime", "onnxruntime")
    printed = capsys.readouterr().out
    assert "inference: fp32 + channels-last" in printed and "inference: onnxruntime" in printed
    assert torch_side["AP"] > 0.3
    assert ort_side["AP"] == pytest.approx(torch_side["AP"], abs=1e-3)
    assert list(trained_one_stage.checkpoint.with_suffix(".onnxruntime").glob("*-128x128.onnx"))


def test_eval_in_bf16_keeps_the_ap_where_the_cpu_has_bf16_units(trained_one_stage, tmp_path, capsys):
    """SSD, YOLO and YOLO v1 fitted to 8 images, where the CPU has bf16 units: AP50 within
    0.005 of fp32 (the issue's bar), AP (@[.5:.95]) within 0.02. On 8 images (about 20
    objects) one box that crosses the IoU 0.9 or 0.95 threshold moves AP by about 0.005, and
    bf16 features move boxes by fractions of a pixel: SSD measured -0.015 here but +0.0003 on
    the 200 validation images after 1000 iterations (docs/export.md). Where the CPU has no
    bf16 units, ``auto`` must take fp32 and say why (bf16 is emulated there, so not checked)."""
    cpu = cpu_capabilities()
    if not (cpu.bf16_units() and cpu.onednn):
        eval_command(trained_one_stage, tmp_path)
        assert "inference: fp32 + channels-last" in capsys.readouterr().out and choose_plan().precision == "fp32"
        with capsys.disabled():
            print(f"\n{cpu.model} has no bf16 units: bf16's AP is not checked here; auto took fp32")
        return
    fp32 = eval_command(trained_one_stage, tmp_path, "--precision", "fp32")
    bf16 = eval_command(trained_one_stage, tmp_path, "--precision", "bf16")
    assert "inference: bf16 + channels-last" in capsys.readouterr().out
    assert fp32["AP"] > 0.3
    assert abs(bf16["AP50"] - fp32["AP50"]) <= 0.005, (bf16["AP50"], fp32["AP50"])
    assert abs(bf16["AP"] - fp32["AP"]) <= 0.02, (bf16["AP"], fp32["AP"])
