"""runtime onnxruntime's own rules: the choice checked before anything runs, one error line
without the package, the cache named by the weights, a graph that differs refused and not
kept, and an image without detections answered by PyTorch. (Its outputs against runtime
torch: tests/tools/test_export.py, on trained models.)"""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from detseg.config import load_config, to_plain
from detseg.data import ShapesDataset
from detseg.deploy import ExportError
from detseg.errors import ConfigError
from detseg.inference import Predictor
from detseg.inference.onnx_runtime import fingerprint, onnxruntime_model
from detseg.inference.runtime import check_runtime
from detseg.models import build_model


def tiny(config: str, num_classes: int, *overrides: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(to_plain(load_config(f"configs/model/{config}.yaml",
                                            [f"num_classes={num_classes}", *overrides]))).eval()


@pytest.fixture()
def sample(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    return ShapesDataset(split="val", num_images=1, image_size=64, seed=1)[0]


def test_the_runtime_is_checked_before_anything_runs():
    assert check_runtime("onnxruntime", "auto", "cpu") == "onnxruntime"
    with pytest.raises(ConfigError, match="runtime must be one of torch, onnxruntime, got 'ort'"):
        check_runtime("ort")
    with pytest.raises(ConfigError, match="precision bf16 is for runtime torch"):
        check_runtime("onnxruntime", "bf16")
    with pytest.raises(ConfigError, match="runtime onnxruntime runs on the CPU"):
        check_runtime("onnxruntime", "fp32", "cuda")


def test_without_onnxruntime_infer_and_eval_say_how_to_install_it(monkeypatch, tmp_path, capsys):
    from detseg.commands.eval import main as evaluate
    from detseg.commands.infer import main as infer

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    (tmp_path / "a.png").write_bytes(b"")
    for main, argv in ((infer, [str(tmp_path / "a.png"), "--checkpoint", "x.pt", "--out", str(tmp_path / "o")]),
                       (evaluate, ["configs/faster_rcnn/shapes.yaml", "--checkpoint", "x.pt"])):
        assert main([*argv, "--runtime", "onnxruntime"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0] == ("error: runtime onnxruntime needs the onnxruntime package, which is "
                                            "not installed: pip install detseg[export]")


def test_the_cache_is_named_by_the_weights_and_the_config():
    model = tiny("unet_tiny", 4)
    same = fingerprint(copy.deepcopy(model), {"name": "unet"})
    assert fingerprint(model, {"name": "unet"}) == same and len(same) == 16
    assert fingerprint(model, {"name": "unet", "score_threshold": 0.5}) != same
    with torch.no_grad():
        next(model.parameters())[0].flatten()[0] += 1e-6
    assert fingerprint(model, {"name": "unet"}) != same


def test_new_weights_replace_the_graphs_of_the_old_ones(sample, tmp_path):
    model = tiny("unet_tiny", 4)
    first, _ = onnxruntime_model(model, tmp_path)
    first.predict([sample])
    (old,) = tmp_path.glob("*-any.onnx")
    with torch.no_grad():
        next(model.parameters())[0].flatten()[0] += 0.1
    second, _ = onnxruntime_model(model, tmp_path)
    second.predict([sample])
    (new,) = tmp_path.glob("*.onnx")
    assert new.name != old.name and new.name.startswith(fingerprint(model))


def test_a_graph_that_differs_from_pytorch_is_refused_and_not_kept(sample, tmp_path):
    """Tolerance -1: even an exact graph differs by more, so the check must refuse it."""
    runner, _ = onnxruntime_model(tiny("unet_tiny", 4), tmp_path, tolerance=-1.0)
    with pytest.raises(ExportError, match="does not reproduce the PyTorch model"):
        runner.predict([sample])
    assert list(tmp_path.iterdir()) == []


def test_an_image_without_detections_gets_pytorchs_answer_and_no_graph(sample, tmp_path):
    model = tiny("faster_rcnn_tiny", 3, "roi_head.score_threshold=1.0")  # nothing scores above 1
    predictor = Predictor(model, {}, [], runtime="onnxruntime", cache_dir=tmp_path)
    result = predictor(sample.image.permute(1, 2, 0).numpy())
    assert len(result) == 0 and result.image_size == (64, 64)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_folder_that_cannot_be_written_falls_back_to_the_temporary_folder(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    _, plan = onnxruntime_model(tiny("unet_tiny", 4), blocked / "cache")
    assert plan.cache_dir.name == "detseg-onnxruntime" and "onnxruntime" in plan.describe()
