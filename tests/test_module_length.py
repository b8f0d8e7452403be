"""How long the core's modules and its training loop may grow (docs STYLE: one concept per
module, core modules around 300 lines at most; nanoGPT: the training loop is one short,
explicit function)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "oemdm_core"
MAX_LINES = 300  # a module of the core
MAX_PLUGIN_LINES = 400  # a module of a built-in plugin
MODULES = sorted(CORE.rglob("*.py"))
PLUGIN_MODULES = sorted((ROOT / "plugins").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_a_core_module_stays_short(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(ROOT)} has {lines} lines, more than {MAX_LINES}: split it by concept"
    )


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_plugin_module_stays_short(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_PLUGIN_LINES, (
        f"{path.relative_to(ROOT)} has {lines} lines, more than {MAX_PLUGIN_LINES}: split it"
    )


def test_fit_reads_as_the_training_loop():
    from oemdm_core.runtime import trainer

    (node,) = ast.parse(inspect.getsource(trainer.fit)).body
    length = node.end_lineno - node.lineno + 1
    assert length < 120, f"trainer.fit has {length} lines; move a step of it into a function"
