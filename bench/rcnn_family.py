"""The R-CNN family on shapes: accuracy, training time and inference speed, in one table.

    python bench/rcnn_family.py [--train] [--images 50]

For each of configs/{rcnn,fast_rcnn,faster_rcnn,mask_rcnn}/shapes.yaml it reads the run
in ``runs/<config path>/`` (``--train`` first trains the missing ones with
``tools/train.py``'s defaults, and makes the selective-search proposal files with
``tools/gen_proposals.py`` when they are missing), then measures on the first ``--images``
validation images, batch 1, median:

- ms/image of the whole detector (R-CNN and Fast R-CNN read the same precomputed
  selective-search proposals, so the comparison is of the detectors alone);
- the proposal step: selective search on the image vs Faster R-CNN's backbone + FPN + RPN.

Accuracy and training time come from the run's ``metrics.json`` (final evaluation on all
200 validation images) and ``metrics.jsonl`` (wall time at the last iteration, periodic
evaluations included). Prints a Markdown table for docs/rcnn_family.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

FAMILY = {
    "R-CNN": "configs/rcnn/shapes.yaml",
    "Fast R-CNN": "configs/fast_rcnn/shapes.yaml",
    "Faster R-CNN": "configs/faster_rcnn/shapes.yaml",
    "Mask R-CNN": "configs/mask_rcnn/shapes.yaml",
}


def median_ms(fn, items) -> float:
    fn(items[0])  # warm-up
    timings = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        timings.append(time.perf_counter() - start)
    return 1000 * sorted(timings)[len(timings) // 2]


def run_dir_of(config: str) -> Path:
    from detseg.experiment import default_run_dir

    return ROOT / default_run_dir(ROOT / config)


def ensure_trained(config: str) -> Path:
    from detseg.experiment import load_experiment

    cfg = load_experiment(ROOT / config)
    for split in ("train", "val"):
        proposals = cfg.data[split].get("proposals")
        if proposals and not Path(proposals).is_file():
            subprocess.run([sys.executable, "tools/gen_proposals.py", config, "--split", split], check=True, cwd=ROOT)
    run_dir = run_dir_of(config)
    if not (run_dir / "metrics.json").is_file():
        subprocess.run([sys.executable, "tools/train.py", config], check=True, cwd=ROOT)
    return run_dir


def load_run(config: str, run_dir: Path, overrides: list[str] | tuple = ()):
    """``(model in eval mode with the run's best.pt, validation data set, final metrics,
    training minutes)`` of a finished run."""
    from detseg.engine.checkpoint import inference_weights, load_checkpoint, load_model_state
    from detseg.experiment import build_model_for, build_split, load_experiment

    cfg = load_experiment(ROOT / config, overrides)
    dataset = build_split(cfg, "val")
    model = build_model_for(cfg, dataset)
    load_model_state(model, inference_weights(load_checkpoint(run_dir / "best.pt")), str(run_dir / "best.pt"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    seconds = [json.loads(line)["seconds"] for line in lines if '"seconds"' in line]
    return model.eval(), dataset, metrics, seconds[-1] / 60 if seconds else float("nan")


def measure(config: str, run_dir: Path, images: int) -> dict[str, float]:
    import torch

    model, dataset, metrics, minutes = load_run(config, run_dir)
    samples = [dataset[i] for i in range(images)]
    with torch.no_grad():
        result = {"ms_per_image": median_ms(lambda s: model.predict([s]), samples)}
        if config.startswith("configs/faster_rcnn"):
            def propose(sample):
                batch, features = model.features([sample])
                return model.proposal_source(batch, features, [sample], with_loss=False)

            result["proposal_ms"] = median_ms(propose, samples)
    if config.startswith("configs/fast_rcnn"):
        from detseg.proposals.selective_search import SelectiveSearch

        search = SelectiveSearch()
        result["proposal_ms"] = median_ms(lambda s: search(s.image.permute(1, 2, 0).contiguous().numpy()), samples)
    result.update(AP50=metrics["AP50"], AP=metrics["AP"], train_minutes=minutes)
    if "mask_AP50" in metrics:
        result.update(mask_AP50=metrics["mask_AP50"], mask_AP=metrics["mask_AP"])
    return result


def measure_family(family: dict[str, str], train: bool, images: int) -> dict[str, dict[str, float]]:
    """:func:`measure` for each ``{name: config}`` with a finished run (``train``: train the
    missing ones first), printing each row as it comes."""
    rows = {}
    for name, config in family.items():
        run_dir = ensure_trained(config) if train else run_dir_of(config)
        if not (run_dir / "best.pt").is_file():
            print(f"{name}: no run in {run_dir}; train it (python tools/train.py {config}) or pass --train")
            continue
        rows[name] = measure(config, run_dir, images)
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items()}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument("--images", type=int, default=50, help="validation images timed")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images, batch 1")
    rows = measure_family(FAMILY, args.train, args.images)

    print("\n| detector | box mAP@0.5 | box mAP | mask mAP@0.5 | mask mAP | train time (min) | ms/image |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        mask = f"{r['mask_AP50']:.3f} | {r['mask_AP']:.3f}" if "mask_AP50" in r else "- | -"
        print(f"| {name} | {r['AP50']:.3f} | {r['AP']:.3f} | {mask} | {r['train_minutes']:.1f} | "
              f"{r['ms_per_image']:.1f} |")
    if "R-CNN" in rows and "Fast R-CNN" in rows:
        print(f"\nR-CNN / Fast R-CNN inference time (same backbone, same proposals): "
              f"{rows['R-CNN']['ms_per_image'] / rows['Fast R-CNN']['ms_per_image']:.1f}x")
    if "Fast R-CNN" in rows and "Faster R-CNN" in rows:
        ss, rpn = rows["Fast R-CNN"]["proposal_ms"], rows["Faster R-CNN"]["proposal_ms"]
        print(f"proposal step: selective search {ss:.1f} ms/image, backbone+FPN+RPN {rpn:.1f} ms/image "
              f"-> RPN is {ss / rpn:.1f}x faster")


if __name__ == "__main__":
    main()
