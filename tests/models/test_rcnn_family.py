"""R-CNN and Fast R-CNN through their shipped configs: proposals made by
tools/gen_proposals.py, 2 training iterations, evaluation, prediction on a new image."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detseg.errors import DataError
from detseg.experiment import build_model_for, build_split, load_experiment, train_from_config
from detseg.inference import Predictor
from detseg.models.heads.region_features import context_boxes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))


def tiny_data(folder: Path) -> list[str]:
    return [
        "data.train.dataset.num_images=4", "data.val.dataset.num_images=3",
        f"data.train.proposals={folder / 'train.json'}", f"data.val.proposals={folder / 'val.pkl'}",
        "train.max_iters=2", "train.eval_every=2", "train.checkpoint_every=2",
        "model.proposal_source.top_n=[300,300]",
    ]


@pytest.fixture(scope="module")
def proposals(tmp_path_factory):
    import gen_proposals

    folder = tmp_path_factory.mktemp("proposals")
    for split in ("train", "val"):
        with pytest.raises(SystemExit) as done:
            gen_proposals.run_cli(gen_proposals.main, ["configs/fast_rcnn/shapes.yaml", *tiny_data(folder),
                                                       "--split", split, "--workers", "2", "--no-progress"])
        assert done.value.code == 0
    return folder


def test_gen_proposals_writes_recall_and_resumes_from_its_cache(proposals, capsys):
    import json

    recall = json.loads((proposals / "val.recall.json").read_text())
    assert recall["recall@2000/iou0.5"] >= recall["recall@100/iou0.7"] > 0.5
    cached = sorted(p.name for p in (proposals / "val.pkl.cache").iterdir())
    assert cached == ["1.npy", "2.npy", "3.npy"]


@pytest.mark.parametrize("config, extra", [
    ("configs/rcnn/shapes.yaml", []),
    ("configs/rcnn/shapes.yaml", ["model.roi_head.classifier=svm"]),
    ("configs/fast_rcnn/shapes.yaml", []),
])
def test_two_iterations_evaluate_and_predict_on_a_new_image(proposals, tmp_path, config, extra):
    torch.manual_seed(0)
    overrides = [*tiny_data(proposals), *extra, f"output_dir={tmp_path / 'run'}"]
    run_dir, metrics = train_from_config(ROOT / config, overrides, progress=False)
    assert "AP50" in metrics
    logged = (run_dir / "metrics.jsonl").read_text()
    assert ("loss_svm" in logged) == ("model.roi_head.classifier=svm" in extra)  # the SVM term, only with the SVM
    # a new image has no proposal file: selective search runs on it
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    prediction = Predictor.from_checkpoint(run_dir / "last.pt")(image)
    assert prediction.image_size == (60, 80)


def test_precomputed_source_without_proposals_names_the_image(proposals):
    cfg = load_experiment(ROOT / "configs/fast_rcnn/shapes.yaml",
                          [*tiny_data(proposals), "model.proposal_source={name: precomputed}", "data.val.proposals=null"])
    dataset = build_split(cfg, "val")
    model = build_model_for(cfg, dataset).eval()
    with pytest.raises(DataError, match="image id 1 has no proposals"):
        model.predict([dataset[0]])


def test_context_padding_leaves_the_box_its_share_of_the_crop():
    boxes = torch.tensor([[10.0, 20.0, 66.0, 48.0]])
    widened = context_boxes(boxes, crop_size=64, context_padding=4)
    # the original box must span 64 - 2 * 4 = 56 of the 64 warped pixels on both axes
    scale = (widened[:, 2:] - widened[:, :2]) / (boxes[:, 2:] - boxes[:, :2])
    assert torch.allclose(scale, torch.tensor(64 / 56))
    assert torch.allclose((widened[:, :2] + widened[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)
