"""Does data loading keep up with training? Loader throughput (decode + augment + collate)
with 0, 1 and 2 workers against the model's training throughput, for one experiment config.

    OMP_WAIT_POLICY=PASSIVE python bench/loader_speed.py CONFIG [key=value ...]
        [--batches 10] [--rounds 3] [--workers 0,1,2] [--threads 2]

    # on real JPEGs (../shared/data/coco128), e.g. the tiny Faster R-CNN:
    python bench/loader_speed.py configs/faster_rcnn/shapes.yaml data=coco \\
        data.train.dataset.ann_file=../shared/data/coco128/annotations/instances.json \\
        data.train.dataset.image_dir=../shared/data/coco128/images \\
        data.val.dataset.ann_file=../shared/data/coco128/annotations/instances.json \\
        data.val.dataset.image_dir=../shared/data/coco128/images

Each round times, in an order that alternates between rounds, ``--batches`` batches from a
fresh training loader per worker count (the workers' start-up included: a run pays it once,
so it is also printed apart as the first batch's wait) and ``--batches`` training steps
(loss, backward, optimizer step) on batches loaded beforehand. Reported: median images/s
over the rounds with min-max, and each loader's ratio to training. With 0 workers the
loading is not overlapped with training: each step waits for its batch, so the share of a
step spent loading is ``training rate / (training rate + loader rate)``, printed as well.
With workers the loading overlaps training but, on 2 cores, takes CPU from the training
threads, which the training figure (measured without workers running) does not show.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

# bench/ modules: the script's own folder is on sys.path
from common import finish, round_order, start


def loader_images_per_second(trainer, workers: int, batches: int) -> tuple[float, float]:
    """``(images/s over batches 2..N, seconds to the first batch)`` of a fresh loader."""
    from dataclasses import replace

    from detseg.engine.loaders import training_loader

    settings = replace(trainer.train_loader, num_workers=workers)
    begin = time.perf_counter()
    stream = iter(training_loader(trainer.train_set, settings, seed=0, start=0))
    next(stream)
    first = time.perf_counter()
    images = 0
    for _ in range(batches):
        images += len(next(stream))
    done = time.perf_counter()
    del stream  # stops the workers
    return images / (done - first), first - begin


def training_images_per_second(trainer, batches: list) -> float:
    model, optimizer = trainer.model.train(), trainer.optimizer
    begin = time.perf_counter()
    for samples in batches:
        losses = model.loss(samples)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return sum(len(b) for b in batches) / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--batches", type=int, default=10, help="batches timed per loader and per training turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated loader worker counts")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start(f"bench/loader_speed.py {' '.join(sys.argv[1:])}", args.threads)

    import torch

    from detseg.experiment import build_trainer, load_experiment

    cfg = load_experiment(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _, _ = build_trainer(cfg, run_dir, torch.device("cpu"), progress=False)
    stream = iter(trainer._loader())  # the trainer's own stream, for the training turns' batches
    batches = [next(stream) for _ in range(args.batches)]
    del stream
    workers = [int(w) for w in args.workers.split(",")]
    sides = [f"loader, {w} workers" for w in workers] + ["training"]
    rates: dict[str, list[float]] = {side: [] for side in sides}
    first_batch: dict[str, list[float]] = {side: [] for side in sides[:-1]}
    training_images_per_second(trainer, batches[:2])  # warm-up
    for r in range(args.rounds):
        for k in round_order(r, len(sides)):
            if sides[k] == "training":
                rates["training"].append(training_images_per_second(trainer, batches))
            else:
                rate, wait = loader_images_per_second(trainer, workers[k], args.batches)
                rates[sides[k]].append(rate)
                first_batch[sides[k]].append(wait)
        print(f"  round {r + 1}: " + ", ".join(f"{s} {rates[s][-1]:.1f} img/s" for s in sides), flush=True)
    train = statistics.median(rates["training"])
    print(f"\n{args.config} {' '.join(args.overrides)}".rstrip())
    print(f"  batch {trainer.train_loader.batch_size}; {args.batches} batches per turn, {args.rounds} rounds")
    print(f"  {'':18} {'img/s median (min-max)':>26} {'/ training':>11} {'first batch s':>14}")
    for side in sides:
        values = rates[side]
        line = f"  {side:18} {statistics.median(values):11.1f} ({min(values):.1f}-{max(values):.1f})".ljust(47)
        if side != "training":
            line += f" {statistics.median(values) / train:11.2f} {statistics.median(first_batch[side]):14.2f}"
        print(line)
    if 0 in workers:
        serial = train / (train + statistics.median(rates["loader, 0 workers"]))
        print(f"  with 0 workers, loading takes {serial:.0%} of each training step (not overlapped)")
    finish()


if __name__ == "__main__":
    main()
