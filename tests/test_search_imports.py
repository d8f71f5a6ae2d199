"""Imports run one way: data below train below search; in the search, the shared core below the
generator, discriminator and trilevel searches (the discriminator search reuses the generator
search's driver; the trilevel search stands alone), the strategy interface below its Optuna
strategies; and ``import tinysr.search`` / the CLI's parser need neither Optuna nor Ray."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tinysr"


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions included; ``top_level_only``: the
    module's own statements), as absolute dotted names."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    out = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}  # `from . import x` imports module x
    return out


def test_the_parser_resolves_relative_imports():
    got = imported_modules(PKG / "search" / "generator" / "driver.py")
    assert "tinysr.search.core.run_store" in got and "tinysr.checkpoint" in got
    rel = imported_modules(PKG / "train" / "trainer.py")
    assert "tinysr.data.batches" in rel and "tinysr.train.config" in rel  # `from ..data.batches`, `from .config`


@pytest.mark.parametrize("below", ["train", "data"])
def test_train_and_data_never_import_the_search(below):
    offenders = {str(f.relative_to(ROOT)): sorted(m for m in imported_modules(f) if m.startswith("tinysr.search"))
                 for f in (PKG / below).rglob("*.py")}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_strategy_interface_does_not_import_the_optuna_strategies():
    strategies = PKG / "search" / "core" / "strategies.py"
    assert not [m for m in imported_modules(strategies) if m.endswith("optuna_strategy")]
    assert "tinysr.search.core.strategies.Strategy" in imported_modules(strategies.with_name("optuna_strategy.py"))


ROOMS = {"core": set(), "generator": {"core"}, "discriminator": {"core", "generator"}, "trilevel": {"core"}}


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_search_room_imports_only_the_rooms_below_it(room):
    """Module-level imports: the core none of the searches, the searches not each other (but the
    discriminator search the generator search's driver)."""
    bad = {}
    for f in (PKG / "search" / room).rglob("*.py"):
        others = {m.split(".")[2] for m in imported_modules(f, top_level_only=True)
                  if m.startswith("tinysr.search.") and len(m.split(".")) > 2} - {room}
        if others - ROOMS[room]:
            bad[str(f.relative_to(ROOT))] = sorted(others - ROOMS[room])
    assert bad == {}
    assert {p.name for p in (PKG / "search").iterdir() if p.suffix == ".py"} == {"__init__.py"}  # nothing left flat


def test_import_tinysr_search_and_the_cli_need_neither_optuna_nor_ray():
    code = ("import sys, tinysr.search, tinysr.search.generator.proxy, tinysr.search.generator.config, "
            "tinysr.search.discriminator.config, tinysr.search.core.registry, tinysr.search.core.backends, "
            "tinysr.search.trilevel, tinysr.cli.main as m\n"
            "m.build_parser()\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'optuna', 'ray', 'optuna_dashboard'}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
