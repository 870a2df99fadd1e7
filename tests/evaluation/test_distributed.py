"""Evaluators gather from all processes: two gloo processes give one process's numbers."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detseg.evaluation import CocoEvaluator, SegmentationEvaluator
from detseg.evaluation.synthetic import random_coco_ground_truth, random_detections
from detseg.structures import SemanticMap


def evaluate_shard(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    gt = random_coco_ground_truth(20, 3, seed=0)
    results = random_detections(gt, per_image=8, seed=1)
    coco = CocoEvaluator(gt, backend="pycocotools")
    coco.update_results(results[rank::world_size])
    g = torch.Generator().manual_seed(0)
    preds, targets = torch.randint(0, 3, (4, 8, 8), generator=g), torch.randint(0, 3, (4, 8, 8), generator=g)
    seg = SegmentationEvaluator(3)
    seg.update([SemanticMap(p) for p in preds[rank::world_size]], targets[rank::world_size])
    metrics = {"coco": coco.compute(), "seg": seg.compute()}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(metrics))
    dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    mp.spawn(evaluate_shard, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True)
    gt = random_coco_ground_truth(20, 3, seed=0)
    single = CocoEvaluator(gt, backend="pycocotools")
    single.update_results(random_detections(gt, per_image=8, seed=1))
    g = torch.Generator().manual_seed(0)
    seg = SegmentationEvaluator(3)
    preds, targets = torch.randint(0, 3, (4, 8, 8), generator=g), torch.randint(0, 3, (4, 8, 8), generator=g)
    seg.update([SemanticMap(p) for p in preds], targets)
    expected = json.loads(json.dumps({"coco": single.compute(), "seg": seg.compute()}))
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == expected
