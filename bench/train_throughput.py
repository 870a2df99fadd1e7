"""Training images/s of one experiment config for several source trees (or overrides), in turns.

    OMP_WAIT_POLICY=PASSIVE python bench/train_throughput.py \\
        --side today /tmp/wt-today --side now . \\
        --side now_256 . model.roi_head.batch_size_per_image=256 \\
        [--config configs/faster_rcnn/shapes.yaml] [--rounds 12] [--steps 3] [--warmup 4]
        [--threads 2] [--seed 0] [--pool 16]

A side is ``NAME TREE [key=value ...]``: a name, a detseg source tree (a ``git worktree`` of an
old commit, or ``.``) and config overrides for that side only. The first side is the
reference the others are compared with.

Each side runs in its own worker process with ``PYTHONPATH`` set to its tree (the worker
checks that ``detseg`` was imported from there) and ``torch.set_num_threads(--threads)``; a tree
with ``detseg/allocator.py`` gets its allocator setting, as its ``tools/train.py`` would.
The worker loads ``TREE/--config`` with its overrides, builds the training split and the model
with that tree's own code (``detseg.experiment.build_split`` / ``build_model_for``, seeded
with ``--seed``), and draws a pool of ``--pool`` batches of the config's ``data.train.batch_size``
images through the training transforms, each image's augmentation seeded (``data[(index, seed)]``,
as the trainer's sampler does), so every side's pool is the same (a checksum is printed).
A training step is the trainer's: ``model.loss(batch)``, their sum, ``zero_grad``,
``backward``, an SGD step with the config's ``train.optimizer`` (lr, momentum, weight decay)
and the linear warm-up of ``train.schedule.warmup_iters``; the batches are taken from the
pool in order, so every side trains on the same images in the same order. Data loading is
not timed (it is the same code on both sides; ``bench/loader_speed.py`` measures it).

The parent runs ``--warmup`` untimed steps on every side, then ``--rounds`` rounds of
``--steps`` steps per side, the order alternating (A B, B A, ...; with three sides the order
also rotates, ``bench/common.py``). Reported per side: seconds per step, median (min-max) of
the rounds; training images/s from the median; the first step's losses (equal where the
code computes the same); and the throughput of each side against the reference as the median
(min-max) of the per-round ratios ``t_reference / t_side`` (above 1: faster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import Series, WorkerPipe, finish, reply, round_order, start


def worker(tree: str, config: str, overrides: list[str], threads: int, seed: int, pool_size: int) -> None:
    """Answer ``steps K`` (time K training steps) and ``quit`` on stdin, ``BENCH <json>`` on stdout."""
    import random

    import numpy as np
    import torch

    import detseg
    from detseg.experiment import build_model_for, build_split, load_experiment

    try:  # what the tree's tools/train.py does at start (trees since 5f1f1b6)
        from detseg.allocator import keep_large_allocations_on_heap
    except ImportError:
        pass
    else:
        keep_large_allocations_on_heap()
    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # anything the libraries print stays off the protocol
    source = Path(detseg.__file__).resolve()
    if Path(tree).resolve() not in source.parents:
        raise SystemExit(f"detseg imported from {source}, not from the tree {tree}")
    torch.set_num_threads(threads)
    cfg = load_experiment(str(Path(tree) / config), overrides)
    data = build_split(cfg, "train")
    torch.manual_seed(seed)
    model = build_model_for(cfg, data).train()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    batch_size = int(cfg.data.train.batch_size)
    order = torch.randperm(len(data)).tolist()
    # (index, seed): the augmentation's random choices fixed per image, as the trainer's sampler does
    pool = [[data[(order[(b * batch_size + i) % len(data)], seed + b * batch_size + i)] for i in range(batch_size)]
            for b in range(pool_size)]
    checksum = float(sum(s.image.double().sum() for batch in pool for s in batch))
    opt_cfg = cfg.train.optimizer
    lr = float(opt_cfg.lr)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr,
                                momentum=float(opt_cfg.get("momentum", 0.0)),
                                weight_decay=float(opt_cfg.get("weight_decay", 0.0)))
    schedule = cfg.train.get("schedule") or {}
    warmup_iters = int(schedule.get("warmup_iters", 0) or 0)
    done = 0
    first_losses: dict[str, float] = {}

    def step() -> None:
        nonlocal done, first_losses
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (done + 1) / warmup_iters) if warmup_iters else lr
        losses = model.loss(pool[done % pool_size])
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if not first_losses:
            first_losses = {k: round(float(v.detach()), 6) for k, v in losses.items()}
        done += 1

    def send(**fields) -> None:
        reply(reply_to, **fields)

    send(ready=True, source=str(source.parent), batch_size=batch_size, image_checksum=checksum,
         roi_batch=int(cfg.model.roi_head.get("batch_size_per_image", 0) or 0), threads=torch.get_num_threads())
    for line in sys.stdin:
        command = line.split()
        if command[0] == "steps":
            begin = time.perf_counter()
            for _ in range(int(command[1])):
                step()
            send(seconds=(time.perf_counter() - begin) / int(command[1]), losses=first_losses)
        elif command[0] == "quit":
            send(steps=done)
            return


class Worker(WorkerPipe):
    """One side's worker process and its line protocol."""

    def __init__(self, name: str, tree: str, overrides: list[str], args) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
        cmd = [sys.executable, __file__, "--worker", json.dumps({
            "tree": str(Path(tree).resolve()), "config": args.config, "overrides": overrides,
            "threads": args.threads, "seed": args.seed, "pool_size": args.pool})]
        super().__init__(name, cmd, env=env, cwd=str(Path(tree).resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", nargs="+", metavar="NAME TREE [key=value]",
                        help="a side: name, source tree, overrides; the first is the reference")
    parser.add_argument("--config", default="configs/faster_rcnn/shapes.yaml", help="experiment YAML, in each tree")
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds (>= 10 for the reported medians)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per side and round")
    parser.add_argument("--warmup", type=int, default=4, help="untimed training steps per side first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same on every side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=16, help="batches drawn once and trained on in turn")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        worker(spec["tree"], spec["config"], spec["overrides"], spec["threads"], spec["seed"], spec["pool_size"])
        return
    if not args.side or len(args.side) < 2 or any(len(s) < 2 for s in args.side):
        parser.error("give at least two --side NAME TREE [key=value ...]")
    start(f"bench/train_throughput.py {' '.join(sys.argv[1:])}", args.threads)
    workers = [Worker(s[0], s[1], s[2:], args) for s in args.side]
    for w, s in zip(workers, args.side):
        print(f"  {w.name}: detseg from {w.info['source']}, overrides {s[2:] or 'none'}; batch "
              f"{w.info['batch_size']}, RoIs per image {w.info['roi_batch']}, pool image checksum "
              f"{w.info['image_checksum']:.6g}", flush=True)
    for w in workers:
        w.ask(f"steps {args.warmup}")
    seconds: dict[str, list[float]] = {w.name: [] for w in workers}
    losses = {}
    for i in range(args.rounds):
        for k in round_order(i, len(workers)):
            reply = workers[k].ask(f"steps {args.steps}")
            seconds[workers[k].name].append(reply["seconds"])
            losses[workers[k].name] = reply["losses"]
        print(f"    round {i + 1}: " + ", ".join(f"{w.name} {seconds[w.name][-1] * 1000:.1f} ms/step" for w in workers),
              flush=True)
    for w in workers:
        w.ask("quit")
        w.process.wait()
    reference = workers[0].name
    print(f"\n{args.config}, {args.rounds} rounds of {args.steps} steps after {args.warmup} warm-up steps, "
          f"batch {workers[0].info['batch_size']}")
    print(f"  {'side':14} {'s/step, median (min-max)':>28} {'img/s':>7} {'throughput vs ' + reference:>26}  "
          f"first step's losses")
    for w in workers:
        series = Series(seconds[w.name])
        per_round = [a / b for a, b in zip(seconds[reference], seconds[w.name], strict=True)]
        spread = Series(per_round)
        print(f"  {w.name:14} {series.s():>28} {w.info['batch_size'] / series.median:7.2f} "
              f"{f'{spread.median:.3f} ({min(per_round):.3f}-{max(per_round):.3f})':>26}  {losses[w.name]}")
    finish()


if __name__ == "__main__":
    main()
