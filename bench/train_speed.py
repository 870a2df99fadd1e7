"""Faster / Mask R-CNN R50-FPN training and inference speed and memory: detseg vs torchvision,
with the same trainable layers, timed in turns.

    python bench/train_speed.py [--family faster|mask] [--size 800] [--runs 10] [--threads 2]
                                [--warmup 1] [--score-thresh 0.05] [--rows 800,128,tiny]
                                [--device cpu|cuda]

The two sides are the same network with the same trainable parameters:

- detseg: ``configs/model/<family>_rcnn_r50_fpn.yaml`` (FrozenBatchNorm everywhere, stem and
  layer1 frozen, 80 classes + background);
- torchvision: ``FasterRCNN`` / ``MaskRCNN`` on ``resnet_fpn_backbone(backbone_name="resnet50",
  weights=None, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d, trainable_layers=3)``,
  ``num_classes=81`` -- what ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` build
  with pretrained weights. (With ``weights=None`` and no backbone weights those builders
  force ``trainable_backbone_layers=5`` and plain ``BatchNorm2d``, i.e. they train every
  layer, so they are not called here.) The trainable parameters of each part and the
  total are printed, and the script stops unless ResNet, FPN and RPN have the same
  trainable counts and the RoI heads differ by exactly torchvision's unused
  background-class outputs (box regression, and mask logits for Mask R-CNN).

Weights: torchvision's random initialisation (seed 0), saved once and loaded into both
sides (detseg through ``init_from``, which maps the names and drops torchvision's unused
background-class box / mask outputs), so both start from the same numbers. Images of
``size`` x ``4/3 size`` pixels (torchvision's resize is then a no-op; 128 x 128 for the
small row), 5 random boxes (and rectangular masks) per image.

Method: each side runs in its own worker process (so its peak RSS is its own; ``ru_maxrss``
at the end, training and inference together) and the parent feeds the two workers one step
at a time, alternating who goes first (A B B A ...), so load from other jobs on the shared
cores hits both alike: ``--warmup`` untimed rounds, then ``--runs`` timed rounds of one
training iteration (batch 2: forward, backward, SGD step) each, then ``--warmup`` untimed
and ``--runs`` timed rounds of inference on one image each (batch 1, ``torch.no_grad``, a different image every round),
with the initial (shared) weights put back first. Reported: median with min-max of each
side, the ratio detseg / torchvision as the median of the per-round ratios with their
min-max, and per image the detections and the boxes that reach the RoI head's NMS.

Detections: with random weights the number above a score threshold is arbitrary, and the
RoI head's NMS (and Mask R-CNN's mask branch) costs in proportion. With the shared initial
weights and both sides' default ``--score-thresh 0.05`` both keep their cap of 100 per
image, and about the same number of boxes reach NMS (printed; they differ through
detseg's own settings: RoIAlign's half-pixel alignment, anchor placement, minimum box
sizes): the same work. After the training steps on random data the two sides' scores
drift apart (in a trial both fell to 0 detections), hence the reset.

``--rows``: ``800`` (the R50-FPN comparison at ``--size``), ``128`` (the same at 128 x 128)
and ``tiny`` (detseg's small CPU config ``<family>_rcnn_tiny`` alone at 128 x 128, for scale).

``--device cuda``: both sides on the GPU, each timed step ended by ``torch.cuda.synchronize()``;
the peak memory compared is then the GPU's (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

# bench/ modules: the script's own folder is on sys.path
from common import Series, WorkerPipe, counts_text, finish, ratio, reply, round_order, start

ROOT = Path(__file__).resolve().parent.parent


def detseg_model(family: str, kind: str, score_thresh: float, init: str = ""):
    from detseg.config import load_config, to_plain
    from detseg.models import build_model

    # COCO's 80 classes as torchvision's models here (81 with background); the shapes' 3 for tiny
    overrides = [f"num_classes={3 if kind == 'tiny' else 80}", f"roi_head.score_threshold={score_thresh}"] + (
        [f"init_from={init}"] if init else [])
    return build_model(to_plain(load_config(ROOT / "configs/model" / f"{family}_rcnn_{kind}.yaml", overrides)))


def torchvision_model(family: str, height: int, width: int, score_thresh: float):
    """torchvision's R50-FPN Faster / Mask R-CNN with detseg's trainable set: frozen BN, stem
    and layer1 frozen (``trainable_layers=3``)."""
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=3)
    cls = {"faster": FasterRCNN, "mask": MaskRCNN}[family]
    return cls(backbone, num_classes=81, min_size=min(height, width), max_size=max(height, width),
               box_score_thresh=score_thresh)


def samples(count: int, height: int, width: int, seed: int = 0):
    import torch

    from detseg.structures import Boxes, DetSample, Instances

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        image = torch.randint(0, 255, (3, height, width), dtype=torch.uint8, generator=g)
        xy = torch.rand(5, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
        wh = (torch.rand(5, 2, generator=g) * 0.25 + 0.05) * torch.tensor([width, height])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 3, (5,), generator=g)
        masks = torch.zeros(5, height, width, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            masks[k, y1:y2, x1:x2] = True
        gt = Instances(Boxes(boxes), labels, (height, width), masks=masks)
        out.append(DetSample(image, i + 1, (height, width), gt=gt))
    return out


def trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_counts(framework: str, model) -> dict:
    """Trainable parameters per part (ResNet, FPN, RPN, RoI head), total parameters, and the
    norm layers. ``background_outputs``: torchvision's box regressor (and mask predictor) also
    has outputs for the background class, which it never uses and detseg does not have."""
    from collections import Counter

    norms = Counter(type(m).__name__ for m in model.modules() if "BatchNorm" in type(m).__name__)
    if framework == "detseg":
        parts = {"resnet": model.backbone, "fpn": model.neck, "rpn": model.proposal_source, "roi_head": model.roi_head}
        background = 0
    else:
        parts = {"resnet": model.backbone.body, "fpn": model.backbone.fpn, "rpn": model.rpn,
                 "roi_head": model.roi_heads}
        box = model.roi_heads.box_predictor.bbox_pred
        background = 4 * (box.in_features + 1)
        if getattr(model.roi_heads, "mask_predictor", None) is not None:
            logits = model.roi_heads.mask_predictor.mask_fcn_logits
            background += logits.weight[0].numel() + 1
    return {"parts": {name: trainable(part) for name, part in parts.items()}, "trainable": trainable(model),
            "total": sum(p.numel() for p in model.parameters()), "background_outputs": background,
            "norm_layers": dict(norms)}


def count_roi_head_nms(framework: str) -> list[int]:
    """Wrap the RoI head's ``batched_nms`` (in this worker process only) so that the number
    of boxes it receives is appended to the returned list: the post-processing work."""
    import types

    from torchvision.ops import boxes as box_ops

    seen: list[int] = []

    def counting(boxes, *rest):
        seen.append(int(boxes.shape[0]))
        return box_ops.batched_nms(boxes, *rest)

    if framework == "detseg":
        import detseg.ops.postprocess as module  # the RoI head's select_detections

        module.batched_nms = counting
    else:
        import torchvision.models.detection.roi_heads as module

        proxy = types.SimpleNamespace(**{k: getattr(box_ops, k) for k in dir(box_ops) if not k.startswith("__")})
        proxy.batched_nms = counting
        module.box_ops = proxy
    return seen


def worker(framework: str, family: str, kind: str, height: int, width: int, count: int, threads: int,
           score_thresh: float, init: str, scratch: str, device: str = "cpu") -> None:
    """Build one model (from the torchvision state dict ``init`` when given), then answer
    the parent's commands on stdin one line at a time: ``train`` (one timed training
    iteration), ``infer K`` (timed inference on image K; the first one puts the initial
    weights back, so that inference runs on the weights both sides share), ``quit`` (peak
    RSS, and peak GPU memory on ``cuda``). Replies are ``BENCH <json>`` lines on stdout."""
    import torch

    def sync() -> None:  # GPU kernels run asynchronously: a step ends when the device is done
        if device == "cuda":
            torch.cuda.synchronize()

    reply_to = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # anything else the libraries print stays off the protocol
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = [s.to(device) for s in samples(max(count, 2), height, width)]
    if framework == "detseg":
        model = detseg_model(family, kind, score_thresh, init)

        def loss_of(batch):
            return sum(model.loss(batch).values())

        def infer(sample):
            return len(model.predict([sample])[0])
    else:
        model = torchvision_model(family, height, width, score_thresh)
        model.load_state_dict(torch.load(init, weights_only=True))

        def to_tv(sample):
            return sample.image.float() / 255

        def loss_of(batch):
            targets = [{"boxes": s.gt.boxes.tensor, "labels": s.gt.labels + 1, "masks": s.gt.masks.to(torch.uint8)}
                       for s in batch]
            return sum(model([to_tv(s) for s in batch], targets).values())

        def infer(sample):
            return len(model([to_tv(sample)])[0]["boxes"])

    model.to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    batch = data[:2]
    nms_inputs = count_roi_head_nms(framework)
    initial = str(Path(scratch) / f"{framework}_initial.pth")
    torch.save(model.state_dict(), initial)

    def send(**fields):
        reply(reply_to, **fields)

    report = getattr(model, "init_report", None)
    send(ready=True, threads=torch.get_num_threads(), init=report.summary() if report is not None else "",
         **parameter_counts(framework, model))
    for line in sys.stdin:
        command = line.split()
        if command[0] == "train":
            model.train()
            sync()
            begin = time.perf_counter()
            loss = loss_of(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()
            send(seconds=time.perf_counter() - begin)
        elif command[0] == "infer":
            if model.training:  # the weights before training, the same on both sides
                model.load_state_dict(torch.load(initial, weights_only=True, mmap=True, map_location=device))
                model.eval()
            sample = data[int(command[1]) % len(data)]
            nms_inputs.clear()
            with torch.no_grad():
                sync()
                begin = time.perf_counter()
                detections = infer(sample)
                sync()
                seconds = time.perf_counter() - begin
            send(seconds=seconds, detections=detections, nms_input=sum(nms_inputs))
        elif command[0] == "quit":
            gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
            send(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak_gpu_mb=gpu)
            return


class Worker(WorkerPipe):
    """A worker process and its line protocol."""

    def __init__(self, framework, family, kind, height, width, count, threads, score_thresh, init, scratch,
                 device="cpu") -> None:
        cmd = [sys.executable, __file__, "--worker", framework, family, kind, str(height), str(width), str(count),
               str(threads), str(score_thresh), init, scratch, device]
        super().__init__(framework, cmd)


    def close(self) -> float:
        """The peak memory: GPU memory on ``cuda``, else the process's RSS (MB)."""
        reply = self.ask("quit")
        self.process.wait()
        return reply["peak_gpu_mb"] if reply.get("peak_gpu_mb") is not None else reply["peak_rss_mb"]


def timed_rounds(workers: list[Worker], command, rounds: int, warmup: int) -> tuple[dict, dict]:
    """``warmup`` untimed then ``rounds`` timed rounds of ``command(i)``, order alternating.
    Returns ``({name: Series}, {name: {"detections": [...], "nms_input": [...]}})``."""
    for i in range(warmup):
        for w in workers:
            w.ask(command(0))
    seconds = {w.name: [] for w in workers}
    counts = {w.name: {"detections": [], "nms_input": []} for w in workers}
    for i in range(rounds):
        for k in round_order(i, len(workers)):
            reply = workers[k].ask(command(i))
            seconds[workers[k].name].append(reply["seconds"])
            for key in ("detections", "nms_input"):
                if key in reply:
                    counts[workers[k].name][key].append(reply[key])
        print(f"    round {i + 1} {command(i).split()[0]}: "
              + ", ".join(f"{w.name} {seconds[w.name][-1]:.2f} s" for w in workers), flush=True)
    return {name: Series(s) for name, s in seconds.items()}, counts


def shared_initial_weights(family: str, height: int, width: int, score_thresh: float, scratch: str) -> str:
    """torchvision's randomly initialised model (seed 0), saved: both sides start from it."""
    import torch

    torch.manual_seed(0)
    path = str(Path(scratch) / f"{family}_rcnn_{height}x{width}.pth")
    torch.save(torchvision_model(family, height, width, score_thresh).state_dict(), path)
    return path


def compare(family: str, kind: str, height: int, width: int, args) -> None:
    import tempfile

    frameworks = ["detseg", "torchvision"] if kind != "tiny" else ["detseg"]
    with tempfile.TemporaryDirectory() as scratch:
        init = shared_initial_weights(family, height, width, args.score_thresh, scratch) if kind != "tiny" else ""
        workers = [Worker(f, family, kind, height, width, args.runs, args.threads, args.score_thresh, init, scratch,
                          args.device) for f in frameworks]
        measure(workers, family, kind, height, width, args)


def measure(workers: list[Worker], family: str, kind: str, height: int, width: int, args) -> None:
    frameworks = [w.name for w in workers]
    title = f"{family}_rcnn_{kind}" if kind == "tiny" else f"R50-FPN {family.title()} R-CNN"
    print(f"\n{title}, {height}x{width}, {args.runs} timed rounds after {args.warmup} warm-up round(s)")
    for w in workers:
        i = w.info
        parts = ", ".join(f"{k} {v:,}" for k, v in i["parts"].items())
        print(f"  {w.name:12} trainable parameters {i['trainable']:,} of {i['total']:,} ({parts}); "
              f"norm layers {i['norm_layers']}; {i['threads']} threads{'; ' + i['init'] if i['init'] else ''}")
    if len(workers) == 2:
        ours, theirs = workers[0].info, workers[1].info
        background = theirs["background_outputs"]
        same = (all(ours["parts"][k] == theirs["parts"][k] for k in ("resnet", "fpn", "rpn"))
                and ours["parts"]["roi_head"] == theirs["parts"]["roi_head"] - background
                and ours["trainable"] == theirs["trainable"] - background)
        if not same:
            for w in workers:
                w.close()
            raise SystemExit("trainable parameter counts differ: not the same training work")
        print(f"  trainable parameters equal in ResNet, FPN and RPN; the RoI heads differ by exactly the "
              f"{background:,} weights of torchvision's background-class box{' and mask' if family == 'mask' else ''} "
              f"outputs (unused; detseg has none)")
    sys.stdout.flush()
    train, _ = timed_rounds(workers, lambda i: "train", args.runs, args.warmup)
    infer, detections = timed_rounds(workers, lambda i: f"infer {i}", args.runs, args.warmup)
    rss = {w.name: w.close() for w in workers}
    memory = "peak GPU MB" if args.device == "cuda" else "peak RSS MB"
    print(f"  {'':12} {'train s/iter (batch 2)':>26} {'train img/s':>11} {'infer ms/img':>26} "
          f"{memory:>11}  detections/img; boxes into the RoI head's NMS per image")
    for name in frameworks:
        print(f"  {name:12} {train[name].s():>26} {2 / train[name].median:11.2f} {infer[name].ms():>26} "
              f"{rss[name]:11.0f}  {counts_text(detections[name]['detections'])}; "
              f"{counts_text(detections[name]['nms_input'])}")
    if len(workers) == 2:
        print(f"  ratio detseg / torchvision, median of per-round ratios (min-max): training time "
              f"{ratio(train['detseg'], train['torchvision'])}, inference time "
              f"{ratio(infer['detseg'], infer['torchvision'])}, {memory[:-3]} {rss['detseg'] / rss['torchvision']:.3f}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["faster", "mask"], default="faster")
    parser.add_argument("--size", type=int, default=800, help="short side of the large R50-FPN row")
    parser.add_argument("--runs", type=int, default=10, help="timed rounds of training and of inference")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before each")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same on both sides")
    parser.add_argument("--score-thresh", type=float, default=0.05, help="RoI head score threshold, both sides")
    parser.add_argument("--rows", default="800,128,tiny", help="comma-separated: 800 (i.e. --size), 128, tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both sides run")
    parser.add_argument("--worker", nargs=11, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, family, kind, height, width, count, threads, score, init, scratch, device = args.worker
        worker(framework, family, kind, int(height), int(width), int(count), int(threads), float(score), init, scratch,
               device)
        return
    start(f"bench/train_speed.py {' '.join(sys.argv[1:])}".strip(), args.threads)
    print(f"{args.family.title()} R-CNN on {args.device}; score threshold {args.score_thresh} on both sides")
    for row in args.rows.split(","):
        if row == "tiny":
            compare(args.family, "tiny", 128, 128, args)
        elif row == "128":
            compare(args.family, "r50_fpn", 128, 128, args)
        else:
            compare(args.family, "r50_fpn", args.size, args.size * 4 // 3, args)
    finish()


if __name__ == "__main__":
    main()
