"""Names that moved out of a module when it was split are served from their new module only:
the modules that held them no longer re-export them (nothing used the old places)."""

from __future__ import annotations

import importlib

import pytest

# module that held the names until 0.1.0 -> {name: module that defines it now}
MOVED = {
    "oemdm_core.runtime.trainer": {
        "lr_factor": "oemdm_core.runtime.optimizer",
        "make_optimizer": "oemdm_core.runtime.optimizer",
        "load_resume_state": "oemdm_core.runtime.checkpoint.resume",
        "draw_samples": "oemdm_core.runtime.training_run",
        "build_data": "oemdm_core.runtime.data_cache",
        "RunLogger": "oemdm_core.runtime.run_log",
    },
    "oemdm_core.runtime.experiment": {
        name: "oemdm_core.runtime.config_dicts"
        for name in ("RESUMABLE_KEYS", "config_differences", "flatten")
    },
    "oemdm_core.model.oemdm": {
        name: "oemdm_core.model.pretrained"
        for name in ("CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "load_weights")
    },
    "oemdm_core.model": {
        name: "oemdm_core.model.pretrained"
        for name in ("CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "load_weights")
    },
    "oemdm_core.runtime.evaluation.zero_shot": {
        name: "oemdm_core.runtime.evaluation.data_spec"
        for name in ("SPLIT_CHOICES", "TABULAR", "parse_data_spec")
    },
    "oemdm_core.runtime.data_cache": {
        name: "oemdm_core.runtime.token_cache"
        for name in ("CACHE_ENV", "array_digest", "tokenize_split")
    },
}
CASES = [(held, name, now) for held, names in MOVED.items() for name, now in names.items()]


@pytest.mark.parametrize(("held", "name", "now"), CASES, ids=[f"{h}.{n}" for h, n, _ in CASES])
def test_a_moved_name_lives_only_at_its_new_home(held, name, now):
    assert hasattr(importlib.import_module(now), name)
    module = importlib.import_module(held)
    assert not hasattr(module, name), f"{held} still serves {name} (it lives in {now})"
    assert name not in getattr(module, "__all__", ())


def test_the_saved_model_file_names_are_unchanged():
    from oemdm_core.model import pretrained

    # The on-disk names of a saved model: what every checkpoint written so far uses.
    assert (pretrained.CONFIG_FILE, pretrained.WEIGHTS_FILE) == ("config.json", "model.safetensors")
