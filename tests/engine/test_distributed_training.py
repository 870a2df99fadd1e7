"""DDP under torchrun with two gloo processes on the CPU: evaluation gives the one-process
numbers, and a killed and resumed two-process run matches an uninterrupted one."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from detseg.engine.checkpoint import load_checkpoint
from detseg.experiment import evaluate_checkpoint, train_from_config
from tests.engine.test_trainer import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def experiment(tmp_path):
    config = json.loads(json.dumps(EXPERIMENT))
    config["data"]["val"]["dataset"]["num_images"] = 7  # shares of 4 and 3 images
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def torchrun(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def train_log(run_dir: Path) -> tuple[dict[int, float], list[dict]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {d["iteration"]: d["loss"] for d in lines if "split" not in d}, [d for d in lines if "split" in d]


def test_two_process_evaluation_equals_one_process(experiment, tmp_path):
    run_dir, _ = train_from_config(experiment, [f"output_dir={tmp_path / 'run'}"], progress=False)
    single = evaluate_checkpoint(experiment, run_dir / "last.pt", progress=False, precision="fp32")
    out = tmp_path / "two.json"
    result = torchrun("tools/eval.py", str(experiment), "--checkpoint", str(run_dir / "last.pt"), "--out", str(out),
                      "--precision", "fp32")
    assert result.stdout.count("wrote") == 1  # rank 0 reports, rank 1 stays silent
    two = json.loads(out.read_text())
    assert two["AP"] > 0  # a trained model, so the comparison means something
    flat = {k: v for k, v in two.items() if not isinstance(v, dict)}
    expected = {k: None if math.isnan(single[k]) else single[k] for k in flat}  # metrics.json writes NaN as null
    assert flat == pytest.approx(expected, abs=1e-12)


def test_two_process_run_resumes_like_an_uninterrupted_one(experiment, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    result = torchrun("tools/train.py", str(experiment), f"output_dir={whole}", "--no-progress")
    assert "2 images x 1 accumulated x 2 process(es) = 4 images per step" in result.stdout
    torchrun("tools/train.py", str(experiment), f"output_dir={part}", "--no-progress", "--stop-after", "3")
    assert load_checkpoint(part / "last.pt")["iteration"] == 3
    result = torchrun("tools/train.py", str(experiment), f"output_dir={part}", "resume=true", "--no-progress")
    assert result.stdout.count("resumed from") == 1

    expected_losses, expected_evals = train_log(whole)
    losses, evals = train_log(part)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]  # one line per iteration: only rank 0 writes
    for iteration in (4, 5, 6):
        assert losses[iteration] == pytest.approx(expected_losses[iteration], rel=1e-6)
    assert evals[-1]["AP"] == pytest.approx(expected_evals[-1]["AP"], abs=1e-9)
    resumed, uninterrupted = load_checkpoint(part / "last.pt"), load_checkpoint(whole / "last.pt")
    assert len(resumed["rng_per_rank"]) == 2
    for name, weight in uninterrupted["model"].items():
        assert torch.allclose(resumed["model"][name].float(), weight.float(), atol=1e-6), name
