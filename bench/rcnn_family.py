"""The R-CNN family on shapes: accuracy, training time and inference speed, in one table.

    python bench/rcnn_family.py [--train | --random-weights] [--images 50] [--threads 2]

For each of configs/{rcnn,fast_rcnn,faster_rcnn,mask_rcnn}/shapes.yaml it reads the run
in ``runs/<config path>/`` (``--train`` first trains the missing ones with
``tools/train.py``'s defaults, and makes the selective-search proposal files with
``tools/gen_proposals.py`` when they are missing). A detector without a run (or every
detector, with ``--random-weights``) is timed with its random initialisation (seed 0) and
has no accuracy: its speed is measured, its accuracy is not.

Speed, on the first ``--images`` validation images, batch 1, pinned ``--threads``:

- the proposal step first: selective search on the image vs Faster R-CNN's backbone + FPN +
  RPN, the two timed in turns image by image (A B B A ...). The selective-search boxes are
  kept and attached to the images (the same settings as ``tools/gen_proposals.py``), so
  R-CNN and Fast R-CNN below read the same precomputed proposals without a file;
- then ms/image of each whole detector, all four timed in turns image by image (each image
  reverses the order of the one before, and the order rotates; see bench/common.py) after
  one warm-up round, with the detections per image of each
  (with random weights most boxes pass the 0.05 score threshold, so the RoI heads keep
  their cap of 100 and Mask R-CNN's mask branch runs on 100 boxes: more post-processing
  than a trained model does). ``--detections N`` sets every detector's score threshold to
  0 and its cap to N, so that all return N per image whatever the weights.

Reported per detector: median and min-max ms/image; the ratios (R-CNN / Fast R-CNN,
selective search / RPN) are medians of the per-image ratios with their min-max.

Accuracy and training time come from the run's ``metrics.json`` (final evaluation on all
200 validation images) and ``metrics.jsonl`` (wall time at the last iteration, periodic
evaluations included). Prints a Markdown table for docs/rcnn_family.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import counts_text, finish, interleaved, ratio, start

ROOT = Path(__file__).resolve().parent.parent

FAMILY = {
    "R-CNN": "configs/rcnn/shapes.yaml",
    "Fast R-CNN": "configs/fast_rcnn/shapes.yaml",
    "Faster R-CNN": "configs/faster_rcnn/shapes.yaml",
    "Mask R-CNN": "configs/mask_rcnn/shapes.yaml",
}


def run_dir_of(config: str) -> Path:
    from detseg.experiment import default_run_dir

    return ROOT / default_run_dir(ROOT / config)


def ensure_trained(config: str, overrides: list[str] | tuple = (), run_dir: Path | None = None) -> Path:
    from detseg.experiment import load_experiment

    cfg = load_experiment(ROOT / config, overrides)
    for split in ("train", "val"):
        proposals = cfg.data[split].get("proposals")
        if proposals and not Path(proposals).is_file():
            subprocess.run([sys.executable, "tools/gen_proposals.py", config, "--split", split], check=True, cwd=ROOT)
    run_dir = run_dir or run_dir_of(config)
    if not (run_dir / "metrics.json").is_file():
        subprocess.run([sys.executable, "tools/train.py", config, *overrides, f"output_dir={run_dir}"], check=True,
                       cwd=ROOT)
    return run_dir


@dataclasses.dataclass
class Entry:
    """A model ready to time: from its finished run, or randomly initialised."""

    model: object
    dataset: object
    metrics: dict | None  # None: random weights, no accuracy
    minutes: float | None


def fix_detections(cfg, count: int) -> None:
    """Score threshold 0 and a cap of ``count`` detections per image, in whichever of
    ``model.roi_head`` (two-stage), ``model.head`` (one-stage) or ``model`` (R-CNN) holds them:
    every detector then returns ``count`` per image (when it has that many boxes after NMS)."""
    node = cfg.model.get("roi_head") or cfg.model.get("head") or cfg.model
    node.score_threshold = 0.0
    node.detections_per_image = count


def prepare(config: str, overrides: list[str] | tuple = (), run_dir: Path | None = None,
            random_weights: bool = False, detections: int = 0) -> Entry:
    """The model of ``config`` in eval mode with the run's ``best.pt`` when there is one in
    ``run_dir`` (and not ``random_weights``), else its random initialisation (seed 0); the
    validation set without proposal files (the bench attaches proposals itself).
    ``detections``: see :func:`fix_detections` (0: as configured)."""
    import torch
    from omegaconf import open_dict

    from detseg.engine.checkpoint import inference_weights, load_checkpoint, load_model_state
    from detseg.experiment import build_model_for, build_split, load_experiment

    cfg = load_experiment(ROOT / config, overrides)
    with open_dict(cfg):
        cfg.data.val.proposals = None
        if detections:
            fix_detections(cfg, detections)
    dataset = build_split(cfg, "val")
    torch.manual_seed(0)
    model = build_model_for(cfg, dataset)
    run_dir = run_dir or run_dir_of(config)
    if random_weights or not (run_dir / "best.pt").is_file():
        return Entry(model.eval(), dataset, None, None)
    load_model_state(model, inference_weights(load_checkpoint(run_dir / "best.pt")), str(run_dir / "best.pt"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    seconds = [json.loads(line)["seconds"] for line in lines if '"seconds"' in line]
    return Entry(model.eval(), dataset, metrics, seconds[-1] / 60 if seconds else float("nan"))


def prepare_family(family: dict[str, str], train: bool, random_weights: bool, detections: int = 0) -> dict[str, Entry]:
    entries = {}
    for name, config in family.items():
        if train and not random_weights:
            ensure_trained(config)
        entries[name] = prepare(config, random_weights=random_weights, detections=detections)
        source = "random weights (speed only)" if entries[name].metrics is None else f"run {run_dir_of(config)}"
        print(f"{name}: {config}, {source}", flush=True)
    return entries


def with_proposals(sample, boxes):
    """``sample`` with selective-search ``boxes`` attached as precomputed proposals (file
    order = best first, as ``tools/gen_proposals.py`` writes them)."""
    import torch

    from detseg.structures import Boxes, Instances

    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    proposals = Instances(Boxes(boxes), torch.zeros(len(boxes), dtype=torch.int64), sample.image_size,
                          scores=-torch.arange(len(boxes), dtype=torch.float32))
    return dataclasses.replace(sample, proposals=proposals)


def time_detectors(entries: dict[str, Entry], samples: dict[str, list], warmup: int = 1):
    """All models in turns, image by image (order alternating, see :func:`common.round_order`): ``({name: Series},
    {name: [detections per image]})``."""
    import torch

    counts = {name: [] for name in entries}

    def runner(name):
        model, items = entries[name].model, samples[name]
        return lambda i: len(model.predict([items[i]])[0])

    count = min(len(v) for v in samples.values())
    with torch.no_grad():
        times = interleaved({name: runner(name) for name in entries}, list(range(count)), warmup,
                            on_result=lambda name, i, n: counts[name].append(n))
    return times, counts


def proposal_step(entries: dict[str, Entry], images: int):
    """Selective search (Fast R-CNN's settings) vs Faster R-CNN's backbone + FPN + RPN, in
    turns: ``(times, selective-search boxes per image)``."""
    import torch

    search = entries["Fast R-CNN"].model.proposal_source.search
    faster = entries["Faster R-CNN"].model
    dataset = entries["Fast R-CNN"].dataset
    items = [dataset[i] for i in range(images)]
    found = {}

    def selective_search(i):
        found[i] = search(items[i].image.permute(1, 2, 0).contiguous().numpy())

    def rpn(i):
        batch, features = faster.features([items[i]])
        return faster.proposal_source.predict(faster.proposal_source(features, batch.padded_size), batch.samples)

    with torch.no_grad():
        times = interleaved({"selective search": selective_search, "backbone+FPN+RPN": rpn}, list(range(images)))
    return times, [found[i] for i in range(images)]


def accuracy_cells(entry: Entry, keys: list[str]) -> list[str]:
    if entry.metrics is None:
        return ["-" for _ in keys] + ["-"]
    return [f"{entry.metrics[k]:.3f}" if k in entry.metrics else "-" for k in keys] + [f"{entry.minutes:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--random-weights", action="store_true", help="time every detector with random weights")
    parser.add_argument("--images", type=int, default=50, help="validation images timed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (all models)")
    parser.add_argument("--detections", type=int, default=0,
                        help="N: score threshold 0 and at most N detections per image on every detector, so all "
                             "return N (0: as configured)")
    args = parser.parse_args()
    start(f"bench/rcnn_family.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    print(f"{args.images} images, batch 1")
    entries = prepare_family(FAMILY, args.train, args.random_weights, args.detections)

    steps, boxes = proposal_step(entries, args.images)
    ss, rpn = steps["selective search"], steps["backbone+FPN+RPN"]
    print(f"\nproposal step, {args.images} images in turns: selective search {ss.ms()}, backbone+FPN+RPN {rpn.ms()} "
          f"-> selective search / RPN {ratio(ss, rpn)}; selective-search boxes per image "
          f"{counts_text(map(len, boxes))}")

    samples = {name: [with_proposals(e.dataset[i], boxes[i]) for i in range(args.images)]
               for name, e in entries.items()}
    times, counts = time_detectors(entries, samples)

    print("\n| detector | box mAP@0.5 | box mAP | mask mAP@0.5 | mask mAP | train time (min) | ms/image, median "
          "(min-max) | detections/image |")
    print("|---|---|---|---|---|---|---|---|")
    for name, e in entries.items():
        cells = accuracy_cells(e, ["AP50", "AP", "mask_AP50", "mask_AP"])
        print(f"| {name} | {' | '.join(cells)} | {times[name].ms()} | {counts_text(counts[name])} |")
    print(f"\nR-CNN / Fast R-CNN inference time (same backbone, same proposals): "
          f"{ratio(times['R-CNN'], times['Fast R-CNN'])} (median of per-image ratios, min-max)")
    print(f"selective search / (backbone+FPN+RPN): {ratio(ss, rpn)}")
    finish()


if __name__ == "__main__":
    main()
