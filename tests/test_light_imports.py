"""The search's packages (Optuna, optuna-dashboard, Ray: the ``search`` extra) are never imported by
``import tinysr`` nor by the commands that upscale, list, evaluate, export or train; without them a
search command says in one line how to install them."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import tinysr

ROOT = Path(tinysr.__file__).resolve().parent
EXTRA = ("ray", "optuna", "optuna_dashboard")
SEARCH = ("tinysr.search", "tinysr.cli.search")

# A subprocess in which the extra is not installed: importing any of its packages fails as it would.
WITHOUT_EXTRA = textwrap.dedent(f"""
    import importlib.abc, sys
    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {EXTRA!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, NotInstalled())
""")


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRA + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _modules() -> list[str]:
    """Every tinysr module outside the search."""
    names = [m.name for m in pkgutil.walk_packages([str(ROOT)], "tinysr.")]
    return ["tinysr"] + [n for n in names if not n.startswith(SEARCH)]


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, at its top or inside its functions, as absolute names."""
    path = ROOT.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            out.add(".".join(base + ([node.module] if node.module else [])))
    return out


def test_no_module_outside_the_search_names_the_search_packages():
    offenders = {m: sorted(i for i in _imports(m) if i.split(".")[0] in EXTRA) for m in _modules()}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_tinysr_and_the_everyday_commands_run_without_the_search_extra(tmp_path):
    """Every module outside the search and every tinysr module those import inside functions (e.g.
    the GAN stage's proxy data) import, and models / upscale / eval / train run, with Optuna, Ray
    and optuna-dashboard unavailable; none of them is then in ``sys.modules``."""
    lazy = sorted({i for m in _modules() for i in _imports(m) if i.startswith("tinysr.")})
    from PIL import Image

    from conftest import rng_image

    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(rng_image(32, 40)).save(hr / "a.png")
    result = _run(f"""
        import importlib, sys
        for name in {_modules() + lazy!r}:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as e:  # `from pkg import function` names that are not modules
                if e.name != name:
                    raise
        from tinysr.cli.main import main
        assert main(["models", "tpsr_x*"]) == 0
        assert main(["upscale", "hr/a.png", "-o", "a_x4.png", "-q"]) == 0
        assert main(["eval", "--model", "tpsr_x4", "--data", "hr", "--lpips", "off", "-q"]) == 0
        assert main(["train", "--model", "tpsr_x4", "--train-data", "hr", "--val-data", "hr", "--out-dir", "run",
                     "--steps", "1", "--set", "patch_size=8", "--set", "batch_size=1", "-q"]) == 0
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {EXTRA!r})
        assert not loaded, loaded
        print("ok")
    """, tmp_path)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("ok"), result.stdout + result.stderr
    assert (tmp_path / "a_x4.png").is_file() and (tmp_path / "run" / "last.pt").is_file()


def test_a_search_without_the_extra_says_how_to_install_it(tmp_path):
    config = ROOT / "configs" / "search_demo.yaml"
    result = _run(f"""
        from tinysr.cli.main import main
        raise SystemExit(main(["search", "generator", "--config", {str(config)!r}]))
    """, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinysr: error: ") and 'pip install "tinysr[search]"' in lines[0]
    assert not any(tmp_path.iterdir())  # nothing made before the one line
