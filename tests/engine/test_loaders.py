"""Every loader setting of a split (``data.<split>``) reaches the DataLoader that reads it:
the training stream of ``data.train``, the evaluation passes of ``data.val`` / ``data.test``."""

import importlib
from itertools import islice

import pytest
import torch

import detseg.engine.trainer as trainer_module
from detseg.data import LoaderConfig, ShapesDataset
from detseg.engine.loaders import evaluation_loader, loader_settings, training_loader
from detseg.engine.trainer import TrainConfig, Trainer
from detseg.errors import ConfigError
from detseg.experiment import build_evaluation, build_trainer, load_experiment
from detseg.models.base import Model

evaluate_module = importlib.import_module("detseg.engine.evaluate")  # the package exports a function of that name


class Constant(Model):
    task = "segmentation"

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def loss(self, samples):
        return {"loss": self.bias ** 2}


@pytest.fixture(scope="module")
def seven_images():
    return ShapesDataset(split="train", num_images=7, image_size=32)


def first_batches(loader, count=3):
    """Image indices of the first batches, from the batch sampler: no image is read."""
    return [[index for index, _ in batch] for batch in islice(iter(loader.batch_sampler), count)]


def test_the_training_loader_takes_batch_size_workers_shuffle_and_drop_last(seven_images):
    settings = LoaderConfig(dataset={}, batch_size=3, num_workers=2, shuffle=False, drop_last=True)
    loader = training_loader(seven_images, settings, seed=0, start=0)
    assert (loader.batch_size, loader.num_workers) == (3, 2)
    # drop_last: an epoch of 7 images is cut to 6, so no batch spans two epochs
    assert first_batches(loader) == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    kept = training_loader(seven_images, LoaderConfig(dataset={}, batch_size=3), seed=0, start=0)
    assert first_batches(kept) == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
    shuffled = training_loader(seven_images, LoaderConfig(dataset={}, batch_size=3, shuffle=True), seed=0, start=0)
    assert first_batches(shuffled) != first_batches(kept)


def test_drop_last_cuts_whole_batches_of_every_process(seven_images):
    settings = LoaderConfig(dataset={}, batch_size=2, drop_last=True)
    ranks = [first_batches(training_loader(seven_images, settings, seed=0, start=0, rank=r, num_replicas=2), 2)
             for r in range(2)]
    assert ranks == [[[0, 2], [0, 2]], [[1, 3], [1, 3]]]  # an epoch of 7 is cut to one global batch of 4
    with pytest.raises(ConfigError, match=r"data.train: drop_last needs at least 8 images .* the data set has 7"):
        training_loader(seven_images, LoaderConfig(dataset={}, batch_size=4, drop_last=True), 0, 0, 0, 2)


def test_the_trainer_streams_with_the_split_settings(seven_images, tmp_path):
    settings = LoaderConfig(dataset={}, batch_size=3, drop_last=True)
    trainer = Trainer(Constant(), TrainConfig(max_iters=1), seven_images, settings, tmp_path, torch.device("cpu"),
                      {}, progress=False)
    assert first_batches(trainer._loader()) == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]


def test_evaluation_reads_the_split_batch_size_and_workers(seven_images, monkeypatch):
    seen = []

    def spy(dataset, batch_size, num_workers=0):
        seen.append((batch_size, num_workers))
        return evaluation_loader(dataset, batch_size)

    monkeypatch.setattr(evaluate_module, "evaluation_loader", spy)
    evaluate_module.validation_loss(Constant(), seven_images, "cpu", 4, 3)
    assert seen == [(4, 3)]
    assert len(evaluation_loader(seven_images, 4, 0)) == 2  # every image once, the last batch kept


def test_the_trainer_evaluates_with_data_val_settings(tmp_path, monkeypatch):
    cfg = load_experiment("configs/unet/shapes.yaml", [
        "data.train.dataset.num_images=2", "data.val.dataset.num_images=2", "data.val.num_workers=2",
        "data.val.batch_size=3", "train.val_loss=true", "device=cpu"])
    trainer, _, _ = build_trainer(cfg, tmp_path, torch.device("cpu"), initialize=False, progress=False)
    calls = []
    monkeypatch.setattr(trainer_module, "evaluate", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    monkeypatch.setattr(trainer_module, "validation_loss", lambda *args: calls.append((args, {})) or {})
    trainer.cfg.best_metric = None
    trainer._evaluate()
    (evaluated, options), (losses, _) = calls
    assert evaluated[4] == 3 and options["num_workers"] == 2
    assert losses[3:] == (3, 2)


@pytest.mark.parametrize("key", ["shuffle", "drop_last"])
def test_training_only_settings_are_refused_on_an_evaluation_split_by_key(key):
    cfg = load_experiment("configs/fcn/fcn8s_shapes.yaml", [f"data.val.{key}=true"])
    with pytest.raises(ConfigError, match=rf"^data\.val\.{key}: a setting of the training split") as info:
        build_evaluation(cfg, "val")
    assert "\n" not in str(info.value)
    assert loader_settings(cfg.data.train, "data.train").shuffle  # the training split keeps its own
