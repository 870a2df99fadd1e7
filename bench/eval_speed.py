"""COCO bbox evaluation speed: pycocotools vs detseg's fastest backend, timed in turns.

    python bench/eval_speed.py [--num-images 500 --num-classes 80 --per-image 100]
                               [--runs 10] [--warmup 1] [--threads 2]

Every run is one fresh process (so its peak RSS is its own) that builds the same synthetic
set (seeded: the same images, ground truth and detections every time, so the work is
fixed: ``--per-image`` detections on each image) and times one evaluation (indexing,
matching, accumulation, the 12 numbers). The processes run one at a time in alternating
order (pycocotools, detseg, detseg, pycocotools, ...: ABBA), ``--runs`` of each after
``--warmup`` untimed pairs (default 1, to fill the page cache). Threads: ``torch.set_num_threads`` and
``OMP/MKL/OPENBLAS_NUM_THREADS`` = ``--threads`` in every worker. Prints the median and
min-max seconds and peak RSS of each, the ratio detseg / pycocotools (median of the
per-round ratios, min-max), and checks that the 12 numbers agree in every run.

The default set is 500 images (10 % of COCO val; about 50,000 detections): the full
5000-image set takes pycocotools over two minutes a run (``--num-images 5000``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# bench/ modules: the script's own folder is on sys.path
from common import Ratio, Series, finish, start


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
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
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each backend")
    parser.add_argument("--threads", type=int, default=2, help="threads of every worker")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs of runs first")
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        worker(args)
        return
    start(f"bench/eval_speed.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    from detseg.evaluation.coco import COCO_METRICS, available_backend

    fastest = available_backend("auto")
    backends = ("pycocotools-direct", fastest)
    env = {**os.environ,
           **{k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}

    def run(backend: str) -> dict:
        cmd = [sys.executable, __file__, "--backend", backend, "--num-images", str(args.num_images),
               "--num-classes", str(args.num_classes), "--per-image", str(args.per_image),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    for _ in range(args.warmup):  # not kept
        for backend in backends:
            run(backend)
    runs = {backend: [] for backend in backends}
    for i in range(args.runs):
        for backend in backends if i % 2 == 0 else backends[::-1]:
            runs[backend].append(run(backend))
            print(f"  round {i + 1}: {backend:>20} {runs[backend][-1]['seconds']:7.2f} s", flush=True)
    ref, ours = runs["pycocotools-direct"], runs[fastest]
    print(f"\nset: {args.num_images} images, {ref[0]['annotations']} annotations, {ref[0]['detections']} detections "
          f"({args.per_image} per image, the same in every run), {args.num_classes} classes; {args.runs} runs each")
    for backend in backends:
        seconds = Series([r["seconds"] for r in runs[backend]])
        peak = [r["peak_mb"] for r in runs[backend]]
        print(f"{backend:>20}: {seconds.s()}   peak RSS {statistics.median(peak):.0f} MB "
              f"({min(peak):.0f}-{max(peak):.0f})")
    time_ratio = Ratio([b["seconds"] / a["seconds"] for a, b in zip(ref, ours)])
    peak_ratio = Ratio([b["peak_mb"] / a["peak_mb"] for a, b in zip(ref, ours)])
    print(f"{'ratio':>20}: detseg ({fastest}) / pycocotools = {time_ratio} (time), {peak_ratio} (peak RSS); "
          f"median of per-round ratios (min-max)")
    worst = max(abs(x - y) for a, b in zip(ref, ours)
                for x, y in zip(a["stats"], [(-1.0 if v != v else v) for v in b["stats"]]))
    print(f"{'max |difference|':>20}: {worst:.2e} over the 12 numbers ({', '.join(COCO_METRICS)}), all runs")
    finish()


if __name__ == "__main__":
    main()
