"""One name per thing: the names that used to collide are defined once, and each old name
still works until 0.3 with a `DeprecationWarning` that names its replacement."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p for folder in ("oemdm_core", "plugins", "benchmarks") for p in (ROOT / folder).rglob("*.py")
)

# name -> the one module (path from the repository root) that defines it at top level
ONE_HOME = {
    "check_sampler": "oemdm_core/testing/sampler.py",
    "KVCache": "oemdm_core/interfaces/backbone.py",
    "generative_perplexity": "oemdm_core/runtime/evaluation/sample_metrics.py",
    "describe": None,  # now `commented_config_yaml` and `component_label`
}

# (module, old name, new name)
RENAMED = [
    ("oemdm_core.runtime.experiment", "describe", "commented_config_yaml"),
    ("oemdm_core.testing.common", "describe", "component_label"),
    ("oemdm_transformer.cache", "KVCache", "TransformerKVCache"),
]


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


@pytest.mark.parametrize("name", sorted(ONE_HOME))
def test_a_colliding_name_has_one_home(name):
    homes = [str(p.relative_to(ROOT)) for p in SOURCES if name in top_level_names(p)]
    assert homes == ([ONE_HOME[name]] if ONE_HOME[name] else []), homes


@pytest.mark.parametrize(("module", "old", "new"), RENAMED, ids=[f"{m}.{o}" for m, o, _ in RENAMED])
def test_an_old_name_warns_and_gives_the_new_object(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .*removed in 0\.3.*{new}"):
        value = getattr(mod, old)
    assert value is getattr(mod, new)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = mod.no_such_name


def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match="removed in 0.3"):
        from oemdm_core.runtime.experiment import describe
    from oemdm_core.runtime.experiment import commented_config_yaml

    assert describe is commented_config_yaml


def test_the_checkpoint_names_say_which_is_which():
    from oemdm_core.runtime.checkpoint.store import CHECKPOINT_VERSIONS_DIR, LATEST_CHECKPOINT

    assert (LATEST_CHECKPOINT, CHECKPOINT_VERSIONS_DIR) == ("checkpoint", "checkpoints")
