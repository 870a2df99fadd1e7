"""Progress: a tqdm bar on a terminal, plain timed lines in a file (no carriage returns)."""

import io
import os
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from detseg.engine.trainer import loss_postfix
from detseg.progress import PlainProgress, progress

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_a_tqdm_bar_and_a_file_gets_plain_lines():
    assert isinstance(progress(total=3, stream=Terminal()), tqdm)
    assert isinstance(progress(total=3, stream=io.StringIO()), PlainProgress)


def test_plain_lines_come_every_interval_and_at_the_end_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(None, 100, "train", "it", 0, False, out, interval=10, clock=clock)
    for step in range(1, 61):
        clock.now = step * 0.5  # 2 it/s
        bar.set_postfix(loss=f"{1 / step:.3f}")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    # printed at 10 s (step 20), 20 s (step 40), 30 s (step 60) and once more at close
    assert lines[0] == "train: 20/100 (20%) loss=0.050 2.00 it/s ETA 40s"
    assert lines[1] == "train: 40/100 (40%) loss=0.025 2.00 it/s ETA 30s"
    assert len(lines) == 4 and lines[3] == lines[2]
    assert "\r" not in out.getvalue()


def test_the_training_line_shows_the_total_and_each_loss_term():
    assert loss_postfix({"loss": 0.41, "loss_rpn_cls": 0.05, "loss_cls": 0.2}) == \
        {"loss": "0.410", "rpn_cls": "0.050", "cls": "0.200"}


def test_disabled_or_idle_progress_prints_nothing():
    out = io.StringIO()
    PlainProgress(None, 5, "eval", "batch", 0, False, out, interval=0).close()
    bar = PlainProgress(range(3), None, "eval", "batch", 0, True, out, interval=0)
    assert list(bar) == [0, 1, 2] and bar.total == 3
    assert out.getvalue() == ""


def test_training_redirected_to_a_file_logs_plain_lines(tmp_path):
    log = tmp_path / "train.log"
    with log.open("w") as stream:
        result = subprocess.run(
            [sys.executable, "tools/train.py", "configs/yolo/shapes.yaml", "data.train.dataset.num_images=4",
             "data.val.dataset.num_images=2", "train.max_iters=3", "train.eval_every=0", f"output_dir={tmp_path / 'run'}"],
            cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, timeout=600,
            env={**os.environ, "DETSEG_PROGRESS_SECONDS": "0"})
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("train: ")]
    assert [line.split(" ")[1] for line in lines][:3] == ["1/3", "2/3", "3/3"]
    assert all(f" {term}=" in lines[0] for term in ("loss", "box", "obj", "cls", "lr")), lines[0]
