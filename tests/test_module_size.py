"""Small modules: no ``detseg/**/*.py`` over :data:`MAX_LINES` lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def oversized(package: Path = ROOT / "detseg") -> list[str]:
    """``path: N lines`` for every module of ``package`` over :data:`MAX_LINES` lines."""
    sizes = {path: len(path.read_text().splitlines()) for path in sorted(package.rglob("*.py"))}
    return [f"{path.relative_to(package.parent)}: {n} lines"
            for path, n in sizes.items() if n > MAX_LINES]


def test_a_long_module_is_reported(tmp_path):
    (tmp_path / "detseg" / "ops").mkdir(parents=True)
    (tmp_path / "detseg" / "ops" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "detseg" / "ok.py").write_text("x = 1\n" * MAX_LINES)
    assert oversized(tmp_path / "detseg") == [f"detseg/ops/long.py: {MAX_LINES + 1} lines"]


def test_no_module_is_over_the_limit():
    found = oversized()
    assert not found, (f"split these into modules with one job each (at most {MAX_LINES} lines):\n"
                       + "\n".join(found))
