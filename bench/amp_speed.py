"""Training step time under bf16 autocast (and channels-last) against fp32, on the CPU.

    OMP_WAIT_POLICY=PASSIVE python bench/amp_speed.py CONFIG [key=value ...] [--runs 10]
                                                     [--warmup 2] [--threads 2]

The experiment's own trainer builds the model, optimizer and training stream once; three
copies of the model then train side by side on the same batches, in turns (A B C, C B A,
...: ``bench/common.py``'s :func:`interleaved`):

- **fp32**: plain eager training, what ``train.amp=false`` runs;
- **bf16**: the forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``,
  what ``train.amp=true`` runs on the CPU;
- **bf16 + channels-last**: the same with the weights (hence the convolutions' activations)
  in ``torch.channels_last``.

Each round is one training step (forward, loss, backward, optimizer step) on a batch loaded
before the clock starts, so data loading is not in the times. Printed: the median step of
each side and its ratio to fp32 (median of the per-round ratios, min-max). These ratios are
what ``train.amp: auto`` (:mod:`detseg.engine.precision`) was chosen from; bench/README.md
has them with the CPU they ran on.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import finish, interleaved, ratio, start

ROOT = Path(__file__).resolve().parent.parent


def step_function(model, optimizer, bf16: bool):
    """One training step of ``model`` on a batch, under bf16 autocast when ``bf16``."""
    import torch

    def step(samples):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            losses = model.loss(samples)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(config: str, overrides: list[str], runs: int, warmup: int) -> None:
    import torch

    from detseg.engine.optim import build_optimizer
    from detseg.experiment import build_trainer, load_experiment

    cfg = load_experiment(config, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _, _ = build_trainer(cfg, run_dir, torch.device("cpu"), progress=False)
    stream = iter(trainer._loader())
    batches = [next(stream) for _ in range(runs)]
    sides = {}
    for name, bf16, channels_last in (("fp32", False, False), ("bf16", True, False),
                                      ("bf16 + channels-last", True, True)):
        model = copy.deepcopy(trainer.model).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        sides[name] = step_function(model, build_optimizer(model, trainer.cfg.optimizer), bf16)
    timings = interleaved(sides, batches, warmup=warmup)
    images = trainer.train_loader.batch_size
    print(f"\n{config} {' '.join(overrides)}".rstrip())
    print(f"  batch {images}, {runs} timed training steps per side after {warmup} warm-up")
    print(f"  {'side':24} {'step':>26} {'img/s':>7} {'ratio to fp32':>24}")
    for name, series in timings.items():
        relative = "1" if name == "fp32" else str(ratio(series, timings["fp32"]))
        print(f"  {name:24} {series.ms():>26} {images / series.median:7.2f} {relative:>24}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML, e.g. configs/faster_rcnn/shapes.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--runs", type=int, default=10, help="timed training steps per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    start(f"bench/amp_speed.py {' '.join(sys.argv[1:])}", args.threads)
    measure(args.config, args.overrides, args.runs, args.warmup)
    finish()


if __name__ == "__main__":
    main()
