"""Training options: gradient accumulation, EMA, early stopping, validation loss, a changed
schedule on resume, dry runs."""

import json

import pytest
import torch
import yaml

from detseg.data import LoaderConfig
from detseg.engine.checkpoint import inference_weights, load_checkpoint
from detseg.engine.ema import EMAConfig, ModelEMA
from detseg.engine.optim import ScheduleConfig
from detseg.engine.trainer import TrainConfig, Trainer, TrainingError
from detseg.experiment import build_split, load_experiment, train_from_config
from detseg.models.base import Segmenter
from tests.engine.test_trainer import EXPERIMENT


class PixelRegressor(Segmenter):
    """No BatchNorm, no randomness: a batch's loss is the mean of its images' losses, so
    k batches of b give the gradients of one batch of k*b."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def loss(self, samples):
        images = torch.stack([s.image.float() / 255 for s in samples])
        return {"loss_pixel": (self.conv(images) - 0.5).pow(2).mean()}


@pytest.fixture()
def shapes_train():
    cfg = load_experiment("configs/unet/shapes.yaml", ["data.train.dataset.num_images=8",
                                                       "data.train.dataset.image_size=32", "data.train.transforms=[]"])
    return build_split(cfg, "train")


def gradients_after_one_step(dataset, tmp_path, batch_size, accumulate):
    model = PixelRegressor()
    cfg = TrainConfig(max_iters=1, accumulate=accumulate)
    trainer = Trainer(model, cfg, dataset, LoaderConfig(dataset={}, batch_size=batch_size, shuffle=False), tmp_path,
                      torch.device("cpu"), {}, progress=False)
    batches = [[dataset[i] for i in range(k * batch_size, (k + 1) * batch_size)] for k in range(accumulate)]
    trainer._step(batches)
    return [p.grad.clone() for p in model.parameters()]


def test_accumulating_k_batches_of_b_gives_the_gradients_of_one_batch_of_kb(shapes_train, tmp_path):
    accumulated = gradients_after_one_step(shapes_train, tmp_path / "a", batch_size=2, accumulate=3)
    whole = gradients_after_one_step(shapes_train, tmp_path / "b", batch_size=6, accumulate=1)
    single = gradients_after_one_step(shapes_train, tmp_path / "c", batch_size=2, accumulate=1)
    for a, w, s in zip(accumulated, whole, single):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(s, w)  # one batch alone differs: the test can fail


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, EMAConfig(decay=0.75, tau=0))
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.75 * start + 0.25 * (start + 4.0))
    ramped = ModelEMA(model, EMAConfig(decay=0.9, tau=10))
    ramped.updates = 10
    assert ramped.decay() == pytest.approx(0.9 * (1 - torch.e ** -1))


@pytest.fixture()
def experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    return path


def test_ema_weights_are_kept_apart_and_are_what_best_pt_evaluates(experiment, tmp_path, monkeypatch):
    import detseg.engine.trainer as trainer_module

    evaluated = []
    real_evaluate = trainer_module.evaluate

    def spy(model, *args, **kwargs):
        evaluated.append(model)
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", spy)
    run, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'e'}", "+train.ema={decay: 0.9, tau: 0}"],
                               progress=False)
    best = load_checkpoint(run / "best.pt")
    raw, averaged = best["model"], best["ema"]["weights"]
    assert best["ema"]["updates"] == best["iteration"]
    differing = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], averaged[k])]
    assert differing, "EMA weights equal the raw weights"
    assert inference_weights(best) is averaged
    assert all(m is not None and not m.training for m in evaluated)
    assert all(not any(p.requires_grad for p in m.parameters()) for m in evaluated)  # the frozen EMA copy


def test_early_stopping_stops_after_patience_evaluations_without_improvement(experiment, tmp_path, monkeypatch):
    import detseg.engine.trainer as trainer_module

    scores = iter([0.5, 0.6, 0.55, 0.58, 0.6, 0.9, 0.9])  # best at the 2nd evaluation, then 3 not better

    monkeypatch.setattr(trainer_module, "evaluate", lambda *a, **k: {"AP50": next(scores)})
    run, _ = train_from_config(experiment, [f"output_dir={tmp_path / 's'}", "train.max_iters=7", "train.eval_every=1",
                                            "+train.patience=3"], progress=False)
    state = load_checkpoint(run / "last.pt")
    assert state["iteration"] == 5
    assert state["best"] == {"metric": "AP50", "value": 0.6, "iteration": 2}


def test_patience_needs_a_monitored_metric(experiment, tmp_path):
    from detseg.errors import ConfigError

    with pytest.raises(ConfigError, match="patience needs train.best_metric"):
        train_from_config(experiment, [f"output_dir={tmp_path / 'p'}", "train.best_metric=null",
                                       "+train.patience=2"], progress=False)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_validation_loss_is_logged_with_the_metrics(experiment, tmp_path):
    run, metrics = train_from_config(experiment, [f"output_dir={tmp_path / 'v'}", "train.max_iters=2",
                                                  "+train.val_loss=true"], progress=False)
    val = [r for r in records(run) if r.get("split") == "val"]
    assert val and all(r["val_loss"] > 0 and "AP50" in r for r in val)
    assert metrics["val_loss"] == pytest.approx(sum(v for k, v in metrics.items()
                                                    if k.startswith("val_loss_")))


def test_resume_with_a_longer_schedule_reports_and_follows_it(experiment, tmp_path, capsys):
    whole, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'w'}", "train.max_iters=10"], progress=False)
    short, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'x'}"], progress=False)  # max_iters 6
    capsys.readouterr()
    extended, _ = train_from_config(experiment, [f"output_dir={short}", "resume=true", "train.max_iters=10"],
                                    progress=False)
    out = capsys.readouterr().out
    assert "train.max_iters changed from 6 to 10" in out
    lr_whole = {r["iteration"]: r["lr"] for r in records(whole) if "lr" in r}
    lr_resumed = {r["iteration"]: r["lr"] for r in records(extended) if "lr" in r}
    assert max(lr_resumed) == 10
    for iteration in range(7, 11):  # the cosine of a 10-iteration run, not of a 6-iteration one
        assert lr_resumed[iteration] == pytest.approx(lr_whole[iteration])
    with pytest.raises(TrainingError, match="below the iteration"):
        train_from_config(experiment, [f"output_dir={short}", "resume=true", "train.max_iters=4"], progress=False)


def test_dry_run_runs_one_iteration_and_writes_nothing(experiment, tmp_path, capsys):
    run, metrics = train_from_config(experiment, [f"output_dir={tmp_path / 'd'}", "train.eval_every=1",
                                                  "+train.patience=2"], progress=False, dry_run=True)
    assert metrics == {} and not run.exists()
    assert "dry run: 12 training images, 4 validation images" in capsys.readouterr().out


def test_reference_batch_scales_the_lr_linearly_to_the_effective_batch(shapes_train, tmp_path, capsys):
    cfg = TrainConfig(max_iters=1, accumulate=3, reference_batch=2, schedule=ScheduleConfig(name="constant", warmup_iters=0))
    cfg.optimizer.lr = 0.01
    trainer = Trainer(PixelRegressor(), cfg, shapes_train, LoaderConfig(dataset={}, batch_size=2), tmp_path,
                      torch.device("cpu"), {}, progress=False)
    assert trainer.images_per_step == 6
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.03)  # 0.01 x 6 / 2
    trainer.train()
    assert "lr 0.03 = 0.01 x 6/2 (linear scaling rule" in capsys.readouterr().out
