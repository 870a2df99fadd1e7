"""Record, then compare, what every tiny detector computes at fixed seeds: the check that a
refactor changed no behaviour.

    python bench/snapshot.py record before.pt        # on the old tree
    python bench/snapshot.py record after.pt         # on the new tree
    python bench/snapshot.py compare before.pt after.pt

For each shapes config (R-CNN with the softmax and with the SVMs), on the first 4 validation
images: the training losses, the sum of absolute gradients after one backward, and the
detections (boxes, scores, labels, masks) in evaluation mode. ``compare`` prints, per model,
whether losses and detections are bit-identical and the gradient sums equal to 1e-6
(relative), and exits 1 when one is not.
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
import torch

CONFIGS = {
    "faster_rcnn": ("configs/faster_rcnn/shapes.yaml", []),
    "mask_rcnn": ("configs/mask_rcnn/shapes.yaml", []),
    "fast_rcnn": ("configs/fast_rcnn/shapes.yaml", ["data.val.proposals=null"]),
    "rcnn": ("configs/rcnn/shapes.yaml", ["data.val.proposals=null"]),
    "rcnn_svm": ("configs/rcnn/shapes.yaml", ["data.val.proposals=null", "model.roi_head.classifier=svm"]),
    "ssd": ("configs/ssd/shapes.yaml", []),
    "yolo": ("configs/yolo/shapes.yaml", ["model.head.score_threshold=0.00001"]),
    "yolo_v1": ("configs/yolo/v1_shapes.yaml", []),
}


def record(path: str, images: int = 4) -> None:
    from detseg.experiment import build_model_for, build_split, load_experiment

    torch.set_num_threads(1)  # one thread: the same reduction order in every run
    out = {}
    for key, (config, overrides) in CONFIGS.items():
        cfg = load_experiment(config, overrides)
        data = build_split(cfg, "val")
        torch.manual_seed(0)
        model = build_model_for(cfg, data)
        random.seed(0)
        np.random.seed(0)
        samples = [data[i] for i in range(images)]
        model.train()
        torch.manual_seed(1)
        losses = model.loss(samples)
        sum(losses.values()).backward()
        grad = sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None)
        model.eval()
        torch.manual_seed(2)
        with torch.no_grad():
            predictions = model.predict(samples)
        out[key] = {"losses": {k: v.detach() for k, v in losses.items()}, "grad": grad.detach(),
                    "predictions": [(p.boxes.tensor, p.scores, p.labels, p.masks) for p in predictions]}
        print(key, {k: round(float(v), 6) for k, v in losses.items()}, f"grad {float(grad):.6g}",
              "detections", [len(p) for p in predictions], flush=True)
    torch.save(out, path)


def same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def compare(before_path: str, after_path: str) -> int:
    before = torch.load(before_path, weights_only=True)
    after = torch.load(after_path, weights_only=True)
    failed = 0
    for key in before:
        if key not in after:
            print(f"{key}: missing in {after_path}")
            failed += 1
            continue
        a, b = before[key], after[key]
        losses = a["losses"].keys() == b["losses"].keys() and all(same(a["losses"][k], b["losses"][k])
                                                                   for k in a["losses"])
        grad = torch.allclose(a["grad"], b["grad"], rtol=1e-6)
        predictions = len(a["predictions"]) == len(b["predictions"]) and all(
            all(same(x, y) for x, y in zip(pa, pb)) for pa, pb in zip(a["predictions"], b["predictions"]))
        print(f"{key}: losses {'identical' if losses else 'DIFFER'}, gradient sum "
              f"{'equal' if grad else 'DIFFERS'} ({float(a['grad']):.6g} vs {float(b['grad']):.6g}), "
              f"detections {'identical' if predictions else 'DIFFER'}")
        failed += not (losses and grad and predictions)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record").add_argument("out")
    both = sub.add_parser("compare")
    both.add_argument("before")
    both.add_argument("after")
    args = parser.parse_args()
    if args.command == "record":
        record(args.out)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
