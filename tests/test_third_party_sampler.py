"""The example sampler plugin `examples/plugins/oemdm-confident`: it registers, passes the
sampler conformance kit (step callback included), serves as the block sampler's inner rule,
and its built wheel is found through its `oemdm` entry point."""

from __future__ import annotations

import importlib
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from oemdm_core import Registry, SegmentSampler
from oemdm_core import registry as global_registry
from oemdm_core.cli import main
from oemdm_core.plugin.registry import DISABLE_ENV
from oemdm_core.testing import check_sampler, reference_models

SOURCE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "oemdm-confident"


@pytest.fixture
def module(monkeypatch):
    monkeypatch.syspath_prepend(str(SOURCE))
    monkeypatch.delitem(sys.modules, "oemdm_confident", raising=False)
    yield importlib.import_module("oemdm_confident")
    sys.modules.pop("oemdm_confident", None)


@pytest.fixture
def reg(module) -> Registry:
    registry = Registry()
    registry.register_plugin(module, name="confident")
    return registry


def test_registers_and_passes_the_sampler_kit(reg):
    cls = reg.get("sampler", "most-confident")
    assert issubclass(cls, SegmentSampler) and cls.reports_steps
    check_sampler(cls, registry=reg)
    check_sampler(reg.build("sampler", "most-confident", steps=3, temperature=0.5), registry=reg)
    inner = reg.build("sampler", "block", inner="most-confident", steps=2)
    check_sampler(inner, registry=reg)


def test_each_step_reveals_the_most_confident_positions(reg):
    [(_, model)] = reference_models(reg, configs=[("mdm", "bidirectional", False)])
    sampler = reg.build("sampler", "most-confident", steps=4)
    steps = []
    result = sampler.sample(
        model, 2, generator=torch.Generator().manual_seed(0), callback=steps.append
    )
    assert len(steps) == 4
    assert [int(s.revealed[0].sum()) for s in steps] == [2, 2, 2, 2]  # ⌈m/k⌉ of 8 positions
    state = torch.full_like(result.tokens, model.mask_id)
    for info in steps:  # the revealed ones are the most probable among the masked
        logits = model.denoise(state, info.t).logits.log_softmax(-1).amax(-1)
        masked = state == model.mask_id
        worst_revealed = torch.where(info.revealed, logits, torch.inf).amin(1)
        best_left = torch.where(masked & ~info.revealed, logits, -torch.inf).amax(1)
        assert bool((worst_revealed >= best_left).all())
        state = info.state


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The example's wheel, built from a copy of the sources and unpacked onto sys.path."""
    build_meta = pytest.importorskip("setuptools.build_meta")
    global_registry.available("sampler")
    source = shutil.copytree(SOURCE, tmp_path / "src")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.chdir(source)
    wheel = wheels / build_meta.build_wheel(str(wheels))
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "oemdm_confident", raising=False)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    yield
    sys.modules.pop("oemdm_confident", None)


def test_installed_wheel_is_found_through_its_entry_point(installed, monkeypatch, capsys):
    reg = Registry()
    entry = reg.entry("sampler", "most-confident")
    assert entry.plugin == "confident" and entry.distribution == "oemdm-confident 0.1.0"
    # `oemdm check-plugin confident` runs check_sampler on it (through the process-wide
    # registry; swap in one that sees the unpacked wheel).
    monkeypatch.setattr(sys.modules["oemdm_core.plugin.registry"], "registry", reg)
    assert main(["check-plugin", "confident"]) == 0
    report = capsys.readouterr().out
    assert "sampler  most-confident" in report and "FAIL" not in report
    assert report.strip().endswith("1 passed, 0 failed")
