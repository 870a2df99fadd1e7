"""Where a training step's time goes, part by part, for any experiment config.

    OMP_WAIT_POLICY=PASSIVE python bench/step_profile.py CONFIG [key=value ...] [--iters 20]
                                                        [--warmup 3] [--threads 2]

(Not ``bench/profile.py``: a file of that name in bench/ hides the standard library's
``profile``, which torch imports, from every script run from this folder.)

The experiment's own trainer is built (data set, loader, model, optimizer as ``train.py``
would), then ``--warmup`` untimed and ``--iters`` timed training steps are run by hand:

- **data loading**: waiting for the loader's next batch (decode + augment, or the workers);
- **forward parts**: each direct child of the model (preprocessor, backbone, neck, proposal
  source, RoI head, dense head, segmentation decoder ...) timed by forward hooks; inside a
  two-stage RoI head its region feature extractor (``roi_head.pooler``: RoIAlign / RoI
  pooling, or R-CNN's crops through the trunk) and its RoI sampler are rows of their own
  (*RoI extraction*, *RoI sampling*), and the RoI head row is the rest; a proposal source's
  ``predict`` (decoding, NMS, top-k) is *proposal selection*;
- **losses**: the heads' ``loss`` calls, with their target assignment (anchor / prior
  matching, target encoding) and the loss terms; *other forward glue* is what is left of
  ``model.loss``;
- **backward** and **optimizer** (``step`` + ``zero_grad``).

Per row: median milliseconds per step over the timed steps, and the share of the median
step. The rows add up to the step (up to the medians' rounding). Forward hooks time a part's
own forward calls only, so a part's time spent later inside another's backward is in
*backward*. The CPU, threads and load average are printed (``bench/common.py``); on a
loaded machine compare shares, not absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import finish, start

ROOT = Path(__file__).resolve().parent.parent


class PartTimer:
    """Times named parts: ``seconds[name]`` accumulates each call, whether a module's forward
    (:meth:`watch`, by hooks) or a callable attribute (:meth:`wrap`, e.g. ``head.loss``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[str, list[float]] = defaultdict(list)

    def watch(self, name: str, module) -> None:
        def before(_module, _args):
            self._started[name].append(time.perf_counter())

        def after(_module, _args, _output):
            self.seconds[name] += time.perf_counter() - self._started[name].pop()

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def wrap(self, name: str, owner, attribute: str) -> None:
        function = getattr(owner, attribute)

        def timed(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - begin

        setattr(owner, attribute, timed)  # an instance attribute: this model only

    def reset(self) -> None:
        self.seconds.clear()


# Parts nested inside a top-level part's forward: (child part, parent part) -- the parent's
# row shows its time without them.
NESTED = {"RoI extraction": "roi_head", "RoI sampling": "roi_head"}
LABELS = {"preprocessor": "preprocess (normalise, pad)", "proposal_source": "proposals (RPN forward)",
          "roi_head": "RoI head (without extraction, sampling)"}


def watch_parts(model, timer: PartTimer) -> list[str]:
    """Times the model's direct children (forward hooks), a two-stage detector's RoI
    extraction, RoI sampling and proposal selection, and every head's ``loss``; returns the
    part names in forward order."""
    names = []
    for name, child in model.named_children():
        if sum(1 for _ in child.parameters()) == 0 and name not in ("preprocessor", "proposal_source"):
            continue  # parameter-free helpers (identity heads, criteria) have no forward worth a row
        timer.watch(name, child)
        names.append(name)
        if name == "proposal_source":
            timer.wrap("proposal selection (decode, NMS)", child, "predict")
            names.append("proposal selection (decode, NMS)")
        if name == "roi_head":
            timer.watch("RoI extraction", child.pooler)
            timer.wrap("RoI sampling", child, "roi_sampler")
            names += ["RoI extraction", "RoI sampling"]
        if callable(getattr(child, "loss", None)):
            timer.wrap("losses (with target assignment)", child, "loss")
    if any(callable(getattr(child, "loss", None)) for child in model.children()):
        names.append("losses (with target assignment)")
    return names


def profile(config: str, overrides: list[str], iters: int, warmup: int) -> None:
    import torch

    from detseg.experiment import build_trainer, load_experiment

    cfg = load_experiment(config, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _, _ = build_trainer(cfg, run_dir, torch.device("cpu"), progress=False)
    model, optimizer = trainer.model.train(), trainer.optimizer
    timer = PartTimer()
    parts = watch_parts(model, timer)
    batches = iter(trainer._loader())  # the trainer's own training stream
    rows: dict[str, list[float]] = defaultdict(list)
    for step in range(warmup + iters):
        timer.reset()
        begin = time.perf_counter()
        samples = next(batches)
        loaded = time.perf_counter()
        losses = model.loss(samples)
        total = sum(losses.values())
        forward = time.perf_counter()
        total.backward()
        backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if step < warmup:
            continue
        seconds = dict(timer.seconds)
        for child, parent in NESTED.items():
            if child in seconds:
                seconds[parent] -= seconds[child]
        rows["data loading"].append(loaded - begin)
        for name in parts:
            rows[LABELS.get(name, name)].append(seconds.get(name, 0.0))
        measured = sum(v for k, v in timer.seconds.items() if k not in NESTED)
        rows["other forward glue"].append(forward - loaded - measured)
        rows["backward"].append(backward - forward)
        rows["optimizer"].append(done - backward)
        rows["step"].append(done - begin)
    step_ms = statistics.median(rows.pop("step")) * 1000
    images = trainer.train_loader.batch_size
    print(f"\n{config} {' '.join(overrides)}".rstrip())
    print(f"  {type(model).__name__}, batch {images}, {iters} timed steps after {warmup} warm-up; "
          f"median step {step_ms:.1f} ms ({images / step_ms * 1000:.2f} img/s)")
    print(f"  {'part':40} {'ms/step':>9} {'share':>7}")
    for label, values in rows.items():
        ms = statistics.median(values) * 1000
        print(f"  {label:40} {ms:9.1f} {ms / step_ms:7.1%}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML, e.g. configs/faster_rcnn/shapes.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--iters", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    start(f"bench/step_profile.py {' '.join(sys.argv[1:])}", args.threads)
    profile(args.config, args.overrides, args.iters, args.warmup)
    finish()


if __name__ == "__main__":
    main()
