"""DESIGN's layering, read from the import graph: the lower layers (ops, structures, data,
models, and the zoo and proposals they use) never import the upper ones (engine, evaluation,
experiment, inference, commands).

Every module is parsed with ``ast``, so imports inside functions count and relative imports
are resolved to the module they name; nothing is imported to find out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detseg"
LOWER = ("ops", "structures", "data", "models", "zoo", "proposals")
UPPER = ("detseg.engine", "detseg.evaluation", "detseg.experiment", "detseg.inference",
         "detseg.commands")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``detseg/data/coco.py`` -> ``detseg.data.coco``; ``__init__.py`` -> its package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``, at any depth.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports
    are resolved against ``module`` (a package's ``__init__`` is its own base).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, target
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{target}.{alias.name}"


def is_upper(name: str) -> bool:
    return any(name == upper or name.startswith(upper + ".") for upper in UPPER)


def layering_violations(package: Path = PACKAGE, root: Path = ROOT) -> list[str]:
    """``file:line: imports NAME`` for every upper-layer import under the lower layers."""
    found = []
    for layer in LOWER:
        for path in sorted((package / layer).rglob("*.py")):
            module = module_name(path, root)
            seen = set()
            for line, name in imported_names(path.read_text(), module, path.name == "__init__.py"):
                if is_upper(name) and line not in seen:
                    seen.add(line)
                    found.append(f"{path.relative_to(root)}:{line}: imports {name}")
    return found


@pytest.mark.parametrize("source, module, is_package, expected", [
    ("import detseg.engine.trainer", "detseg.ops.boxes", False, {"detseg.engine.trainer"}),
    ("def f():\n    from detseg import experiment", "detseg.data.coco", False,
     {"detseg", "detseg.experiment"}),
    ("from ..evaluation import coco", "detseg.data.coco", False,
     {"detseg.evaluation", "detseg.evaluation.coco"}),
    ("from . import voc", "detseg.data", True, {"detseg.data", "detseg.data.voc"}),
    ("from ...inference.run import x", "detseg.models.heads.ssd", False,
     {"detseg.inference.run", "detseg.inference.run.x"}),
])
def test_imports_are_found_at_any_depth_and_resolved(source, module, is_package, expected):
    assert {name for _, name in imported_names(source, module, is_package)} == expected


def test_a_planted_violation_is_reported(tmp_path):
    """The scan finds an upper-layer import inside a function, relative, in a lower layer."""
    models = tmp_path / "detseg" / "models"
    models.mkdir(parents=True)
    (models / "bad.py").write_text("import torch\n\n\ndef f():\n    from ..engine import trainer\n")
    assert layering_violations(tmp_path / "detseg", tmp_path) == [
        "detseg/models/bad.py:5: imports detseg.engine"]


def test_lower_layers_do_not_import_upper_layers():
    violations = layering_violations()
    assert not violations, "lower layers import upper ones:\n" + "\n".join(violations)
