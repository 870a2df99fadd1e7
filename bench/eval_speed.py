"""COCO bbox evaluation speed: pycocotools vs detseg's fastest backend, in one run.

    python bench/eval_speed.py [--num-images 5000 --num-classes 80 --per-image 100]

Each backend runs in its own process (so peak memory is its own) on the same synthetic
COCO-val-sized set. Prints seconds, peak RSS, the ratio, and checks the 12 numbers agree.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def worker(args: argparse.Namespace) -> None:
    from detseg.evaluation.coco import COCO_METRICS, coco_metrics
    from detseg.evaluation.synthetic import random_coco_ground_truth, random_detections

    gt = random_coco_ground_truth(args.num_images, args.num_classes, max_objects=14, seed=0)
    results = random_detections(gt, args.per_image, seed=1)
    if args.backend == "pycocotools-direct":
        import contextlib
        import io

        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            gt_api = COCO()
            gt_api.dataset = gt
            gt_api.createIndex()
            ev = COCOeval(gt_api, gt_api.loadRes(results), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        seconds = time.perf_counter() - start
        stats = [float(v) for v in ev.stats]
    else:
        start = time.perf_counter()
        metrics = coco_metrics(gt, results, "bbox", backend=args.backend)
        seconds = time.perf_counter() - start
        stats = [metrics[k] for k in COCO_METRICS]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "stats": stats,
                      "detections": len(results), "annotations": len(gt["annotations"])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        worker(args)
        return
    from detseg.evaluation.coco import COCO_METRICS, available_backend

    fastest = available_backend("auto")
    runs = {}
    for backend in ("pycocotools-direct", fastest):
        cmd = [sys.executable, __file__, "--backend", backend, "--num-images", str(args.num_images),
               "--num-classes", str(args.num_classes), "--per-image", str(args.per_image)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[backend] = json.loads(out.strip().splitlines()[-1])
        print(f"{backend:>20}: {runs[backend]['seconds']:8.2f} s   peak RSS {runs[backend]['peak_mb']:8.0f} MB")
    ref, ours = runs["pycocotools-direct"], runs[fastest]
    print(f"{'set':>20}: {args.num_images} images, {ref['annotations']} annotations, "
          f"{ref['detections']} detections, {args.num_classes} classes")
    print(f"{'ratio':>20}: detseg ({fastest}) / pycocotools = {ours['seconds'] / ref['seconds']:.3f} "
          f"(time), {ours['peak_mb'] / ref['peak_mb']:.3f} (peak memory)")
    worst = max(abs(a - b) for a, b in zip(ref["stats"], [(-1.0 if v != v else v) for v in ours["stats"]]))
    print(f"{'max |difference|':>20}: {worst:.2e} over the 12 numbers "
          f"({', '.join(COCO_METRICS)})")


if __name__ == "__main__":
    main()
