"""Imports run one way: data below train below search, the strategy interface below its Optuna
strategies; and ``import tinysr.search`` / the CLI's parser need neither Optuna nor Ray."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tinysr"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions included), as absolute dotted names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}  # `from . import x` imports module x
    return out


def test_the_parser_resolves_relative_imports():
    got = imported_modules(PKG / "search" / "driver.py")
    assert "tinysr.search.run_store" in got and "tinysr.checkpoint" in got


@pytest.mark.parametrize("below", ["train", "data"])
def test_train_and_data_never_import_the_search(below):
    offenders = {str(f.relative_to(ROOT)): sorted(m for m in imported_modules(f) if m.startswith("tinysr.search"))
                 for f in (PKG / below).rglob("*.py")}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_strategy_interface_does_not_import_the_optuna_strategies():
    (strategies,) = PKG.rglob("search/**/strategies.py")
    assert not [m for m in imported_modules(strategies) if m.endswith("optuna_strategy")]


def test_import_tinysr_search_and_the_cli_need_neither_optuna_nor_ray():
    code = ("import sys, tinysr.search, tinysr.search.proxy, tinysr.search.trilevel, tinysr.cli.main as m\n"
            "m.build_parser()\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'optuna', 'ray', 'optuna_dashboard'}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
