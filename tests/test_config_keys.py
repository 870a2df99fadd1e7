"""Every key of every experiment config reaches the code, not just validation.

Validation accepts a key when it is a field of a config section or a keyword argument of
the builder its node names. These tests check that such a key is then used:

- Each experiment (``configs/default.yaml``, ``configs/<family>/*.yaml``) is composed and
  its trainer, evaluation splits, data sets, evaluator and model are built as the tools
  build them, without training, while :func:`detseg.config.record_consumed_keys` records
  each key handed to a component builder (:func:`detseg.config.build`) or to a section
  dataclass (:func:`detseg.config.build_section`). Models are built on the meta device
  without their initial weights, with the network blocked and an empty ``TORCH_HOME``, so
  nothing is downloaded. A key that nothing received fails, named by its config path.
- Each field of the config section dataclasses must be read by code that runs: an
  attribute or key read inside a function that the package or the tools refer to (a read
  in a function nothing calls does not count), or be an interpolation source of the
  configs (``${data.data_root}``).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import socket
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import detseg.experiment as experiment
from detseg.config import experiment_files, record_consumed_keys
from detseg.data import DataConfig
from detseg.engine.loaders import loader_settings
from detseg.experiment import (
    ExperimentConfig,
    build_evaluation,
    build_split,
    build_trainer,
    load_experiment,
)
from detseg.registry import MODELS
from tests.test_config import camvid_root, overrides_for_sample_data  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "detseg").rglob("*.py"), *(ROOT / "tools").rglob("*.py")])
META = torch.device("meta")


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network, an empty weights cache, and models built on the meta device (no memory,
    no initialisation: fast even for VGG-16), on the CPU where a model cannot be."""

    def refuse(*args, **kwargs):
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    real_build = experiment.build_model_for

    def on_meta(cfg, dataset=None, initialize=True, verbose=False):
        try:
            with torch.device("meta"):
                return real_build(cfg, dataset, initialize=initialize)
        except (RuntimeError, NotImplementedError):  # e.g. a constructor that reads a tensor's value
            return real_build(cfg, dataset, initialize=initialize)

    monkeypatch.setattr(experiment, "build_model_for", on_meta)


def used_keys(cfg, run_dir: Path) -> set[str]:
    """The config paths of the keys handed to a constructor while the experiment's parts are built."""
    splits = [s for s in ("train", "val", "test") if cfg.data.get(s) is not None]
    with record_consumed_keys() as used:
        if cfg.get("train") is not None and cfg.get("model") is not None:
            build_trainer(cfg, run_dir, META, initialize=False, progress=False)  # data.train/val, train, model
        else:  # a data-only experiment: its splits as the trainer of one with a model would read them
            for split in splits:
                build_split(cfg, split)
                loader_settings(cfg.data[split], f"data.{split}")
        for split in ("val", "test"):
            if split in splits and cfg.get("evaluator") is not None:
                build_evaluation(cfg, split)  # as evaluate_checkpoint(..., split=split)
    return used


def leaf_paths(value, path: str = "") -> Iterator[str]:
    """Config paths of the leaves: mapping keys joined by '.', list items of mappings as [i]."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaf_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for i, item in enumerate(value):
            yield from leaf_paths(item, f"{path}[{i}]")
    else:
        yield path


def ancestors(path: str) -> Iterator[str]:
    """``a.b[0].c`` -> ``a.b[0]``, ``a.b``, ``a`` (nearest first)."""
    while True:
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return
        path = path[:cut]
        yield path


def value_at(tree, path: str):
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        tree = tree[int(part[1:-1])] if part.startswith("[") else tree[part]
    return tree


def is_used(path: str, used: set[str], tree) -> bool:
    """Handed over itself, or inside a value handed over whole: a plain list or mapping that
    the receiver read as a whole (no key below it was handed over on its own, and it is no
    ``{name: ...}`` component node, which must be built)."""
    if path in used:
        return True
    for parent in ancestors(path):
        if parent in used:
            nested = any(u.startswith((parent + ".", parent + "[")) for u in used)
            node = value_at(tree, parent)
            return not nested and not (isinstance(node, dict) and "name" in node)
    return False


def interpolated(tree) -> set[str]:
    """The paths that ``${...}`` interpolations in ``tree`` refer to."""
    found = set()
    for path in leaf_paths(tree):
        value = value_at(tree, path)
        if isinstance(value, str):
            found.update(re.findall(r"\$\{([\w.]+)\}", value))
    return found


def section_fields(schema: type) -> dict[str, set[str]]:
    """Every dataclass section under ``schema`` (itself included): name -> its field names."""
    found = {schema.__name__: {f.name for f in dataclasses.fields(schema)}}
    for hint in typing.get_type_hints(schema).values():
        for option in (typing.get_args(hint) or (hint,)):
            if dataclasses.is_dataclass(option) and option.__name__ not in found:
                found |= section_fields(option)
    return found


SECTIONS = section_fields(ExperimentConfig)
SETTINGS = {f.name for f in dataclasses.fields(ExperimentConfig)} | {
    f"data.{f.name}" for f in dataclasses.fields(DataConfig)}
"""Top-level and data-level settings: read from the composed config by code (``cfg.seed``,
``cfg.data.get("check")``), not handed to a constructor; their reads are the second test's."""
SHARED = {f"model.{key}" for key in MODELS.shared_keys}
"""Keys the model registry lets every node set; ``build_model`` reads them, not the builder."""


@pytest.mark.parametrize("path", experiment_files(), ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_key_of_every_experiment_reaches_a_constructor(path, camvid_root, offline, tmp_path):
    cfg = load_experiment(path, overrides_for_sample_data(path, camvid_root))
    used = used_keys(cfg, tmp_path / "run")
    tree = OmegaConf.to_container(cfg, resolve=False)
    exempt = SETTINGS | SHARED | interpolated(tree)
    unused = [p for p in leaf_paths(tree) if p not in exempt and not is_used(p, used, tree)]
    assert not unused, f"{path.name}: validated but handed to no constructor: {', '.join(unused)}"


class LiveReads(ast.NodeVisitor):
    """Names read as attributes (``x.name``) or keys (``x["name"]``, ``x.get("name")``,
    ``getattr(x, "name")``, or named in a tuple or list literal that code loops over) inside
    code that runs: module level, class bodies, and functions that something refers to by
    name (or that a decorator registers). ``__all__`` names nothing."""

    def __init__(self, referenced: set[str]) -> None:
        self.referenced = referenced
        self.reads: set[str] = set()
        self.live = True

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        was = self.live
        self.live = was and (node.name in self.referenced or bool(node.decorator_list)
                             or (node.name.startswith("__") and node.name.endswith("__")))
        self.generic_visit(node)
        self.live = was

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.live and isinstance(node.ctx, ast.Load):
            self.reads.add(node.attr)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self.live and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            self.reads.add(node.slice.value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if not any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets):
            self.generic_visit(node)

    def visit_Tuple(self, node: ast.Tuple | ast.List) -> None:  # keys named in a literal, read in a loop
        if self.live:
            self.reads |= {item.value for item in node.elts if isinstance(item, ast.Constant)
                           and isinstance(item.value, str)}
        self.generic_visit(node)

    visit_List = visit_Tuple

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        keys = node.args[:1] if name == "get" else node.args[1:2] if name == "getattr" else []
        for key in keys:
            if self.live and isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.reads.add(key.value)
        self.generic_visit(node)


def live_reads(sources: list[Path]) -> set[str]:
    trees = [ast.parse(path.read_text()) for path in sources]
    referenced = {node.id for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        node.attr for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    visitor = LiveReads(referenced)
    for tree in trees:
        visitor.visit(tree)
    return visitor.reads


def test_the_liveness_check_ignores_reads_in_code_nothing_calls():
    source = ("def used(cfg):\n    return cfg.kept + cfg['indexed'] + getattr(cfg, 'by_name')\n\n"
              "def dead(cfg):\n    return cfg.dropped\n\n__all__ = ['exported']\nused(None)\n")
    reads = LiveReads({"used"})
    reads.visit(ast.parse(source))
    assert {"kept", "indexed", "by_name"} <= reads.reads
    assert "dropped" not in reads.reads and "exported" not in reads.reads


def test_every_field_of_every_config_section_is_read_by_code_that_runs():
    reads = live_reads(SOURCES)
    sources = set()
    for config in (ROOT / "configs").rglob("*.yaml"):
        sources |= {ref.rsplit(".", 1)[-1] for ref in re.findall(r"\$\{([\w.]+)\}", config.read_text())}
    unread = [f"{section}.{name}" for section, names in SECTIONS.items() for name in sorted(names)
              if name not in reads and name not in sources]
    assert not unread, f"config fields that no running code reads: {', '.join(unread)}"
    shared = [key for key in MODELS.shared_keys if key not in reads]
    assert not shared, f"shared keys of the model registry that no running code reads: {shared}"
