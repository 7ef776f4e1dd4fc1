"""docs/ARCHITECTURE.md stays true: its module table lists every module of rekd_core, and a module only
imports the ones listed above it (at the top of the file and inside functions alike), so there is no
import cycle."""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rekd_core"


def _documented_order() -> list[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return re.findall(r"^\| `rekd_core/(\w+)\.py` \|", text, flags=re.MULTILINE)


def _imports(module: str) -> set[str]:
    """The rekd_core modules that ``module`` imports anywhere in its file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rekd_core."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("rekd_core."))
    return names - {module}


def test_every_module_is_documented_once():
    order = _documented_order()
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert len(order) == len(set(order))
    assert set(order) == modules


def test_a_module_only_imports_the_ones_above_it():
    order = _documented_order()
    upward = {module: {name for name in _imports(module) if name in order and order.index(name) > order.index(module)}
              for module in order}
    assert {module: names for module, names in upward.items() if names} == {}


def test_the_model_config_is_read_and_written_below_the_model_and_the_checkpoint():
    """``ModelConfig`` depends on nothing of the package but its errors, and ``TrainConfig``'s module on neither the
    model nor the checkpoint module: both configs come before what is built from them."""
    assert _imports("model_config") <= {"errors"}
    assert not _imports("config") & {"model", "checkpoint", "factory"}
    order = _documented_order()
    assert order.index("config") < order.index("model") < order.index("checkpoint")


def test_only_model_config_reads_the_model_part_of_a_config_by_key():
    """No module reads the model's settings out of a dict by key (``config["mode"]``, ``.get("masking", ...)``)
    with defaults of its own: they are ``ModelConfig``'s attributes, its defaults in ``from_dict``."""
    from rekd_core.model_config import ModelConfig

    fields = "|".join(f.name for f in dataclasses.fields(ModelConfig))
    by_key = re.compile(rf"""\.config(?:\[|\.get\()["']({fields})["']""")
    readers = {path.relative_to(ROOT).as_posix(): by_key.findall(path.read_text(encoding="utf-8"))
               for folder in ("rekd_core", "dashboard", "scripts", "bench") for path in (ROOT / folder).rglob("*.py")}
    assert {path: keys for path, keys in readers.items() if keys} == {}


def test_one_loop_steps_every_objective_and_the_benchmarks_time_that_step():
    """Only fit.py runs backward passes and optimizer steps, for CLS, RE, REKD and MLM alike; the training benchmarks
    time its ``train_step`` and import nothing private of the package (a copy of the step would drift from it)."""
    paths = [*PACKAGE.glob("*.py"), *(ROOT / "bench").glob("*.py")]
    sources = {path: path.read_text(encoding="utf-8") for path in paths}
    stepping = {path.relative_to(ROOT).as_posix() for path, text in sources.items()
                if re.search(r"\.backward\(|optimizer\.step\(\)", text)}
    assert stepping == {"rekd_core/fit.py"}
    bench = sources[ROOT / "bench" / "bench_train.py"]
    assert "from rekd_core.fit import train_step" in bench and "train_step(self.objective" in bench
    private = {path.name: re.findall(r"from rekd_core\.\w+ import \(?[^)]*?\b(_\w+)", text)
               for path, text in sources.items() if path.parent.name == "bench"}
    assert {name: names for name, names in private.items() if names} == {}


def test_a_backbone_kind_is_one_module_and_one_registration():
    """Each kind module is imported by the registry (backbones.py) alone, every kind is registered under the
    ``BackboneConfig.type`` it builds, and every preset names a registered kind."""
    from rekd_core.backbones import KINDS
    from rekd_core.presets import PRESETS

    kinds = {p.stem for p in PACKAGE.glob("backbone_*.py")} - {"backbone_base"}
    assert kinds == {"backbone_hf", "backbone_timm", "backbone_cnn"}
    importers = {module: {kind for kind in kinds if kind in _imports(module)} for module in _documented_order()}
    assert {module: found for module, found in importers.items() if found} == {"backbones": kinds}
    assert all(name == kind.name for name, kind in KINDS.items())
    assert {preset.kind for preset in PRESETS.values()} <= set(KINDS)


def test_each_data_source_is_a_module_of_its_own_behind_the_loaders():
    """Every spec prefix of ``data._LOADERS`` is loaded by a function of a ``data_*`` source module, and data.py
    itself reads no source: it parses specs, registers the sources and draws the splits."""
    from rekd_core import data

    modules = {getattr(loader, "func", loader).__module__ for _, loader in data._LOADERS.values()}
    sources = {f"rekd_core.{p.stem}" for p in PACKAGE.glob("data_*.py")} - {"rekd_core.data_types"}
    assert modules == sources
    assert {name for name in _imports("data") if name.startswith("data_")} == {m.split(".")[1] for m in sources} | {
        "data_types"}
