"""data.train.close_mosaic: the trainer turns the mosaic off at the first of the last N
iterations, in the loader's workers too, and a resumed run stays closed."""

import pytest
import torch

from detseg.data import LoaderConfig, ShapesDataset, build_transforms
from detseg.engine.trainer import TrainConfig, Trainer
from detseg.models.base import Segmenter


class SizeRecorder(Segmenter):
    """Records the image sizes of every training batch; a trivial loss to step on."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.sizes = []

    def loss(self, samples):
        self.sizes.append(sorted({tuple(s.image.shape[1:]) for s in samples}))
        return {"loss_pixel": sum(self.conv(s.image[None].float() / 255).mean() ** 2 for s in samples)}


def trainer_for(tmp_path, workers=0, max_iters=6, close=2):
    # shapes images are 40 x 40; mosaics 24 x 24
    pipeline = build_transforms([{"name": "mosaic", "size": 24}, {"name": "random_affine", "scale": [0.9, 1.1]}])
    dataset = ShapesDataset(num_images=6, image_size=40, seed=3, transforms=pipeline)
    loader = LoaderConfig(dataset={}, batch_size=2, shuffle=True, num_workers=workers, close_mosaic=close)
    model = SizeRecorder()
    trainer = Trainer(model, TrainConfig(max_iters=max_iters, checkpoint_every=1), dataset, loader, tmp_path,
                      torch.device("cpu"), {}, progress=False)
    return trainer, model


@pytest.mark.parametrize("workers", [0, 1])
def test_mosaic_stops_at_the_first_of_the_last_n_iterations(tmp_path, workers):
    trainer, model = trainer_for(tmp_path, workers)
    trainer.train()
    assert model.sizes == [[(24, 24)]] * 4 + [[(40, 40)]] * 2
    assert trainer.train_set.transforms.mosaic_closed


def test_a_run_resumed_after_the_switch_stays_closed_and_one_before_it_switches(tmp_path):
    trainer, _ = trainer_for(tmp_path / "a")
    trainer.train(stop_at=5)  # killed after the switch (iteration 5 was the first without mosaic)
    resumed, model = trainer_for(tmp_path / "a")
    resumed.resume()
    assert resumed.train_set.transforms.mosaic_closed
    resumed.train()
    assert model.sizes == [[(40, 40)]]

    early, _ = trainer_for(tmp_path / "b")
    early.train(stop_at=2)
    resumed, model = trainer_for(tmp_path / "b")
    resumed.resume()
    assert not resumed.train_set.transforms.mosaic_closed
    resumed.train()
    assert model.sizes == [[(24, 24)]] * 2 + [[(40, 40)]] * 2


@pytest.mark.parametrize(("config", "has_mosaic"), [("yolo_cpu", True), ("ssd_cpu", False)])
def test_the_one_stage_custom_configs_train_and_close_their_mosaic(config, has_mosaic, tmp_path, capsys):
    """yolo_cpu trains with mosaic and closes it; ssd_cpu has none by default (docs/one_stage.md)."""
    from pathlib import Path

    from detseg.experiment import train_from_config

    root = Path(__file__).resolve().parents[2]
    mini = root / "datasets" / "shapes_coco_mini"
    data = [f"data.{split}.dataset.{key}={value}" for split in ("train", "val") for key, value in (
        ("ann_file", mini / "annotations" / "instances_val.json"), ("image_dir", mini / "val"))]
    _, metrics = train_from_config(root / "configs" / "custom" / f"{config}.yaml", [
        *data, "train.max_iters=3", "train.eval_every=0", "data.train.batch_size=2", "data.check=off",
        f"output_dir={tmp_path}", *(["data.train.close_mosaic=1"] if has_mosaic else [])], progress=False)
    out = capsys.readouterr().out
    assert ("close_mosaic: no mosaic or random affine from iteration 3" in out) == has_mosaic
    assert "fit: anchor coverage" in out
    assert "AP50" in metrics
