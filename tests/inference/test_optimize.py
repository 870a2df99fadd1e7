"""The inference fast path: the choice ``auto`` makes from the CPU's flags (faked both ways),
BatchNorm folding exact against the unfolded model, and the Predictor on each precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBN

from detseg.config import load_config, to_plain
from detseg.data import ShapesDataset
from detseg.errors import ConfigError
from detseg.inference import Predictor
from detseg.inference.fold_bn import fold_batch_norm
from detseg.inference.optimize import (
    CpuCapabilities,
    choose_plan,
    cpu_capabilities,
    optimize_for_inference,
)
from detseg.models import build_model
from detseg.models.backbones.base import FrozenBatchNorm2d
from detseg.structures import SemanticMap

AMX = CpuCapabilities("Intel Xeon Platinum 8480+", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
AVX512_BF16 = CpuCapabilities("AMD EPYC 9R14", frozenset({"avx2", "avx512f", "avx512_bf16"}))
AVX2 = CpuCapabilities("AMD EPYC 7R13", frozenset({"avx2"}))


# -- the choice ------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu, flag", [(AMX, "amx_bf16"), (AVX512_BF16, "avx512_bf16")])
def test_auto_takes_bf16_and_channels_last_where_the_cpu_has_bf16_units(cpu, flag):
    plan = choose_plan("auto", "cpu", cpu)
    assert (plan.precision, plan.channels_last) == ("bf16", True)
    assert flag in plan.reason and plan.describe().startswith("inference: bf16 + channels-last, ")


def test_auto_stays_fp32_where_the_cpu_lacks_them():
    plan = choose_plan("auto", "cpu", AVX2)
    assert (plan.precision, plan.channels_last) == ("fp32", True)
    assert plan.reason == "CPU lacks bf16 matrix units: no amx_bf16/avx512_bf16"
    assert plan.describe() == ("inference: fp32 + channels-last, 0 BatchNorm folded "
                               "(CPU lacks bf16 matrix units: no amx_bf16/avx512_bf16)")


def test_auto_stays_fp32_without_onednn_and_off_the_cpu():
    no_onednn = CpuCapabilities(AMX.model, AMX.flags, onednn=False)
    assert choose_plan("auto", "cpu", no_onednn).precision == "fp32"
    assert "no oneDNN" in choose_plan("auto", "cpu", no_onednn).reason
    assert (choose_plan("auto", "cuda", AMX).precision, choose_plan("auto", "cuda", AMX).channels_last) == (
        "fp32", False)


def test_an_explicit_precision_is_obeyed_and_explained():
    assert choose_plan("fp32", "cpu", AMX).precision == "fp32"
    emulated = choose_plan("bf16", "cpu", AVX2)
    assert emulated.precision == "bf16" and "emulated" in emulated.reason


def test_an_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        choose_plan("fp16", "cpu", AVX2)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                       "processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n")
    cpu = cpu_capabilities(cpuinfo)
    assert cpu.model == "Some CPU" and cpu.bf16_units() == ["avx512_bf16"]
    assert cpu_capabilities(tmp_path / "missing").flags == frozenset()


def test_auto_on_this_machine(capsys):
    """Where this machine has bf16 units, ``auto`` takes bf16; where it has none, it falls
    back to fp32 and says so (the bf16 path is still checked, emulated, below)."""
    cpu = cpu_capabilities()
    plan = choose_plan("auto", "cpu", cpu)
    if cpu.bf16_units() and cpu.onednn:
        assert plan.precision == "bf16"
    else:
        assert plan.precision == "fp32" and "lacks" in plan.reason + " lacks" * (not cpu.onednn)
    with capsys.disabled():
        print(f"\n{cpu.model}: auto takes {plan.precision} ({plan.reason})")


# -- folding ---------------------------------------------------------------------------------


def randomise_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics and affine parameters in every BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d, TorchvisionFrozenBN)):
                n = m.running_mean.shape[0]
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def tiny_model(config: str, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    cfg = to_plain(load_config(f"configs/model/{config}.yaml", [f"num_classes={num_classes}"]))
    return randomise_batch_norm(build_model(cfg)).eval()


@pytest.fixture(scope="module")
def images():
    return [ShapesDataset(split="val", num_images=3, image_size=128, seed=1)[i] for i in range(3)]


def test_folding_a_detector_is_exact_to_1e4(images, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    model = tiny_model("faster_rcnn_tiny", 3)
    keys = list(model.state_dict())
    fast, plan = optimize_for_inference(model, "fp32")
    assert plan.folded == 10 and plan.kept == 0 and plan.describe() == (
        "inference: fp32 + channels-last, 10 BatchNorm folded (fp32 asked for)")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert list(model.state_dict()) == keys and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    with torch.no_grad():
        expected, got = model.predict(images), fast.predict(images)
    for e, g in zip(expected, got, strict=True):
        assert len(e) == len(g) > 0
        torch.testing.assert_close(g.boxes.tensor, e.boxes.tensor, rtol=0, atol=1e-4)
        torch.testing.assert_close(g.scores, e.scores, rtol=0, atol=1e-4)
        assert torch.equal(g.labels, e.labels)


def test_folding_a_segmenter_is_exact_to_1e4(images, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    model = tiny_model("unet_tiny", 4)
    fast, plan = optimize_for_inference(model, "fp32")
    assert plan.folded == 18 and plan.kept == 0
    with torch.no_grad():  # the logits, not only their arg-max
        expected, got = model.logits(images), fast.logits(images)
        maps = [(getattr(e, "labels", e), getattr(g, "labels", g))  # a label map, or one in a SemanticMap
                for e, g in zip(model.predict(images), fast.predict(images), strict=True)]
    assert all(torch.equal(e, g) for e, g in maps)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


class Parts(nn.Module):
    """Each way a BatchNorm can sit after a convolution, with frozen ones of both kinds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1), FrozenBatchNorm2d(8)  # folded
        self.conv_b, self.bn_b = nn.Conv2d(8, 8, 3, padding=1, bias=False), TorchvisionFrozenBN(8)  # folded
        self.conv_c, self.bn_c = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)  # raw output also added: kept
        self.conv_d, self.bn_d = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)  # in-place ReLU between: kept
        self.conv_e, self.bn_e = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)  # written into in between: kept
        self.pre = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))  # BN first: kept
        self.shared, self.bn_s = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)  # shared conv, BN on every call: folded

    def forward(self, x):
        x = self.bn_b(self.conv_b(self.bn_a(self.conv_a(x))))
        c = self.conv_c(x)
        x = self.bn_c(c) + c
        x = self.bn_d(torch.relu_(self.conv_d(x)))
        e = self.conv_e(x)
        e[:, :1] = 0
        x = self.bn_e(e)
        x = self.pre(x)
        return self.bn_s(self.shared(x)) + self.bn_s(self.shared(x * 2))


def test_only_batch_norms_that_a_convolution_alone_feeds_are_folded():
    model = randomise_batch_norm(Parts()).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        result = fold_batch_norm(model, lambda: model(x))
        got = model(x)
    assert (result.folded, result.kept) == (3, 4)
    assert [name for name, m in model.named_modules() if isinstance(m, nn.Identity)] == ["bn_a", "bn_b", "bn_s"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_folding_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(Parts().train(), lambda: None)


# -- bf16 and the Predictor ----------------------------------------------------------------


def test_predictor_runs_with_each_precision(images, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    model = tiny_model("faster_rcnn_tiny", 3)
    image = images[0].image.permute(1, 2, 0).numpy()
    for precision in ("fp32", "bf16", "auto"):
        predictor = Predictor(model, {}, ["circle", "square", "triangle"], precision=precision)
        result = predictor(image)
        assert predictor.plan.precision == (precision if precision != "auto" else choose_plan().precision)
        assert len(result) > 0 and result.boxes.tensor.dtype == torch.float32 and result.scores.dtype == torch.float32
    assert isinstance(image, np.ndarray) and all(m is not None for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in predictor.model.modules())  # the loaded model is untouched
    with pytest.raises(ConfigError, match="precision"):
        Predictor(model, {}, [], precision="fp16")


def test_a_segmenter_predictor_gives_a_semantic_map_at_the_image_size(images, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    image = images[0].image.permute(1, 2, 0).numpy()[:100, :120]
    for precision in ("fp32", "bf16"):
        result = Predictor(tiny_model("unet_tiny", 4), {}, ["a", "b", "c"], precision=precision)(image)
        assert isinstance(result, SemanticMap) and result.image_size == (100, 120)
        assert result.labels.dtype == torch.int64 and 0 <= int(result.labels.min()) <= int(result.labels.max()) < 4


def test_bf16_keeps_the_segmentation_metric(repo_root, monkeypatch):
    """A U-Net fitted to a few images: mIoU under bf16 + channels-last within 0.005 of fp32
    (emulated where the CPU has no bf16 units, so this runs everywhere)."""
    from detseg.evaluation.segmentation import SegmentationEvaluator

    monkeypatch.chdir(repo_root)
    torch.manual_seed(0)
    cfg = to_plain(load_config("configs/model/unet_tiny.yaml", ["num_classes=4", "backbone.widths=[8,16,32,32,32]",
                                                               "decoder.channels=[32,16,16,8]"]))
    model = build_model(cfg)
    data = ShapesDataset(split="train", num_images=4, image_size=64, seed=5)
    samples = [data[i] for i in range(len(data))]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        loss = sum(model.loss(samples).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    scores = {}
    for precision in ("fp32", "bf16"):
        fast, _ = optimize_for_inference(model, precision)
        evaluator = SegmentationEvaluator(num_classes=4)
        with torch.no_grad():
            evaluator.update(fast.predict(samples), [s.gt_sem_seg for s in samples])
        scores[precision] = evaluator.compute()["mIoU"]
    assert scores["fp32"] > 0.5
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.005, scores


# -- the command line ------------------------------------------------------------------------


def test_infer_names_the_path_it_takes(images, repo_root, monkeypatch, tmp_path, capsys):
    from detseg.commands.infer import main

    monkeypatch.chdir(repo_root)
    cfg = to_plain(load_config("configs/model/faster_rcnn_tiny.yaml", ["num_classes=3"]))
    torch.manual_seed(0)
    torch.save({"config": {"model": cfg}, "model": build_model(cfg).state_dict(),
                "meta": {"class_names": ["circle", "square", "triangle"]}}, tmp_path / "tiny.pt")
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), images[0].image.permute(1, 2, 0).numpy())
    code = main([str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "tiny.pt"), "--out", str(tmp_path / "out"),
                 "--precision", "fp32"])
    assert code == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "inference: fp32 + channels-last, 10 BatchNorm folded (fp32 asked for)")


def test_infer_refuses_an_unknown_precision_in_one_line(tmp_path, capsys):
    from detseg.commands.infer import main

    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "a.png"), "--checkpoint", "x.pt", "--out", str(tmp_path), "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: detseg-infer: argument --precision: invalid choice: 'fp16'")
