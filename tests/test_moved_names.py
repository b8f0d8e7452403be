"""Names that moved when the trainer, the experiment config, the model and zero-shot
evaluation were split into smaller modules stay importable from the module that held them,
under its new and its old path, as the same objects."""

from __future__ import annotations

import importlib

import pytest

# module that held the names -> {name: module that defines it now}
MOVED = {
    "oemdm_core.runtime.trainer": {
        "lr_factor": "oemdm_core.runtime.optimizer",
        "make_optimizer": "oemdm_core.runtime.optimizer",
        "load_resume_state": "oemdm_core.runtime.checkpoint.resume",
        "open_run_dir": "oemdm_core.runtime.training_run",
        "draw_samples": "oemdm_core.runtime.training_run",
        "build_data": "oemdm_core.runtime.data_cache",
        "RunLogger": "oemdm_core.runtime.run_log",
    },
    "oemdm_core.runtime.experiment": {
        name: "oemdm_core.runtime.config_dicts"
        for name in (
            "RESUMABLE_KEYS",
            "apply_override",
            "config_differences",
            "flatten",
            "read_config_file",
        )
    },
    "oemdm_core.model.oemdm": {
        name: "oemdm_core.model.pretrained"
        for name in ("CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "load_weights")
    },
    "oemdm_core.runtime.evaluation.zero_shot": {
        name: "oemdm_core.runtime.evaluation.data_spec"
        for name in ("SPLIT_CHOICES", "TABULAR", "DataSpec", "parse_data_spec")
    },
}
OLD_PATHS = {
    "oemdm_core.runtime.trainer": "oemdm_core.trainer",
    "oemdm_core.runtime.experiment": "oemdm_core.experiment",
    "oemdm_core.runtime.evaluation.zero_shot": "oemdm_core.zero_shot",
}
CASES = [(held, name, now) for held, names in MOVED.items() for name, now in names.items()]


@pytest.mark.parametrize(("held", "name", "now"), CASES, ids=[f"{h}.{n}" for h, n, _ in CASES])
def test_a_moved_name_is_still_where_it_was(held, name, now):
    moved = getattr(importlib.import_module(now), name)
    assert getattr(importlib.import_module(held), name) is moved
    if held in OLD_PATHS:
        assert getattr(importlib.import_module(OLD_PATHS[held]), name) is moved


def test_the_model_package_serves_the_file_names():
    import oemdm_core.model as package
    from oemdm_core.model import pretrained

    # The on-disk names of a saved model: what every checkpoint written so far uses.
    assert (package.CONFIG_FILE, package.WEIGHTS_FILE) == ("config.json", "model.safetensors")
    assert (pretrained.CONFIG_FILE, pretrained.WEIGHTS_FILE) == ("config.json", "model.safetensors")
