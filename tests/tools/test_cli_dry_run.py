"""tools/train.py takes --dry-run anywhere among the overrides."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_train_cli_dry_run_between_overrides(tmp_path):
    result = subprocess.run(
        [sys.executable, "tools/train.py", "configs/unet/shapes.yaml", "data.train.dataset.num_images=4",
         "--dry-run", "data.val.dataset.num_images=2", f"output_dir={tmp_path / 'run'}", "train.accumulate=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "8 images x 2 accumulated x 1 process(es) = 16 images per step" in result.stdout and "dry run: 4 training images, 2 validation images" in result.stdout
    assert not (tmp_path / "run").exists()
