"""The ``detseg-*`` console scripts are the ``tools/*.py`` scripts: same output, same
``error:`` lines, same exit codes (both call ``detseg.commands.<name>.main``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def console_scripts() -> dict[str, str]:
    """The installed ``[project.scripts]`` of ``pyproject.toml``: name -> ``module:function``."""
    scripts = importlib.metadata.distribution("detseg").entry_points.select(group="console_scripts")
    return {script.name: script.value for script in scripts}


def installed(name: str) -> str:
    """Console script ``name``: next to this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} is not installed: `pip install -e .` writes the console scripts"
    return found


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("name, target", sorted(console_scripts().items()))
def test_every_script_is_a_commands_main_with_a_tools_shim(name, target):
    """``detseg-x`` -> ``detseg.commands.x:main``, and ``tools/x.py`` runs that same ``main``."""
    module, function = target.split(":")
    assert module.startswith("detseg.commands.") and function == "main"
    main = getattr(importlib.import_module(module), function)
    tool = ROOT / "tools" / f"{module.rsplit('.', 1)[1]}.py"
    assert name == "detseg-" + tool.stem.replace("_", "-")
    assert runpy.run_path(str(tool), run_name="shim")["main"] is main


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--gt", "no/such/ann.json", "--results", "no/such/res.json"],  # detseg's own error
    ["--gt", "ann.json", "--results", "res.json", "--metric", "voc99"],  # argparse's error
], ids=["help", "missing-file", "bad-choice"])
def test_detseg_eval_behaves_as_tools_eval(args):
    script = run([installed("detseg-eval"), *args])
    tool = run([sys.executable, "tools/eval.py", *args])
    assert (script.returncode, script.stdout, script.stderr) == (tool.returncode, tool.stdout,
                                                                 tool.stderr)
    if args == ["--help"]:
        assert script.returncode == 0 and script.stdout.startswith("usage: detseg-eval ")
    else:
        errors = [line for line in script.stderr.splitlines() if line.startswith("error: ")]
        assert script.returncode == 2 and len(errors) == 1 and "Traceback" not in script.stderr
