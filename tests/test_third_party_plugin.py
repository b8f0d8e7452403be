"""The example third-party plugin `examples/plugins/oemdm-rtl`: packaging, registration,
conformance, the right-to-left windows and an exact NELBO.

Most tests load the module from its source directory and register it by hand. One test
builds the package's wheel and unpacks it into a temporary directory on `sys.path` (what
`pip install --target` does, without pip or the network), then checks that a fresh
`Registry` finds the plugin through its `oemdm` entry point, as it would once installed."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

import oemdm_ar
import oemdm_block
import oemdm_estimators
import oemdm_mdm
import oemdm_samplers
import oemdm_schedules
import oemdm_transformer
import pytest
import torch

from oemdm_core import ConfigError, OeMDM, Registry
from oemdm_core import registry as global_registry
from oemdm_core.cli import main
from oemdm_core.plugin.registry import DISABLE_ENV
from oemdm_core.testing import check_order

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomllib's predecessor, if installed
    tomllib = pytest.importorskip("tomli")

RTL_DIR = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "oemdm-rtl"
BUILTINS = (
    oemdm_schedules,
    oemdm_mdm,
    oemdm_block,
    oemdm_ar,
    oemdm_transformer,
    oemdm_samplers,
    oemdm_estimators,
)


@pytest.fixture
def rtl_module(monkeypatch):
    monkeypatch.syspath_prepend(str(RTL_DIR))
    monkeypatch.delitem(sys.modules, "oemdm_rtl", raising=False)
    module = importlib.import_module("oemdm_rtl")
    yield module
    sys.modules.pop("oemdm_rtl", None)


@pytest.fixture
def reg(rtl_module) -> Registry:
    """Built-ins plus the rtl plugin, registered by hand into a fresh registry."""
    registry = Registry(entry_points=False, disabled=[])
    for plugin in BUILTINS:
        registry.register_plugin(plugin)
    registry.register_plugin(rtl_module, name="rtl")
    return registry


def rtl_model(reg: Registry, length: int = 4, vocab_size: int = 3, **options) -> OeMDM:
    torch.manual_seed(0)
    backbone = reg.build(
        "backbone", "transformer", preset="tiny", vocab_size=vocab_size, max_length=length
    )
    order = reg.build("order", "rtl", **options)
    return OeMDM(backbone, order, reg.build("schedule", "linear"), length=length)


def test_pyproject_declares_the_oemdm_entry_point():
    project = tomllib.loads((RTL_DIR / "pyproject.toml").read_text())
    assert project["project"]["name"] == "oemdm-rtl"
    assert project["project"]["entry-points"]["oemdm"] == {"rtl": "oemdm_rtl"}
    assert project["tool"]["setuptools"]["py-modules"] == ["oemdm_rtl"]
    assert (RTL_DIR / "oemdm_rtl.py").is_file()
    assert "oemdm" in project["project"]["dependencies"]


def test_registers_rtl_order(reg):
    assert "rtl" in reg.available("order")
    entry = reg.entry("order", "rtl")
    assert entry.plugin == "rtl" and entry.distribution is None  # registered by hand
    assert reg.build("order", "rtl", block_size=2).options.block_size == 2
    with pytest.raises(ConfigError, match="block_size"):
        reg.build("order", "rtl", block_size=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "polynomial"])
def test_rtl_passes_the_conformance_kit(reg, schedule):
    check_order(reg.get("order", "rtl"), reg.build("schedule", schedule))  # default options


def test_block_rtl_and_rtl_in_a_model_pass_the_conformance_kit(reg):
    check_order(reg.build("order", "rtl", block_size=2), reg.build("schedule", "cosine"))
    model = rtl_model(reg, length=4)
    check_order(model.order, model=model)


@pytest.mark.parametrize("length", [1, 4, 7])
def test_windows_generate_the_last_position_first(reg, length):
    order = reg.build("order", "rtl")
    fs = order.forward_schedule(
        torch.zeros(1, length, dtype=torch.long), reg.build("schedule", "linear")
    )
    for k in range(length):
        # Inside the k-th time window only position k is partly masked; later positions are
        # still clean, earlier ones fully masked. Reverse time runs 1 → 0, so position L−1
        # (window [(L−1)/L, 1]) is generated first.
        alpha = fs.alpha(torch.tensor([(k + 0.5) / length]))[0]
        active = ((alpha > 0) & (alpha < 1)).nonzero().flatten().tolist()
        assert active == [k]
        assert bool((alpha[k + 1 :] == 1).all()) and bool((alpha[:k] == 0).all())


def test_ancestral_sampler_generates_right_to_left(reg, generator):
    model = rtl_model(reg, length=6)
    sampler = reg.build("sampler", "ancestral", steps=6)
    result = sampler.sample(model, num_samples=3, generator=generator)
    expected = torch.arange(5, -1, -1).expand(3, 6)  # position i un-masked at step L−1−i
    assert torch.equal(result.order, expected)


def test_block_rtl_generates_blocks_right_to_left(reg, generator):
    model = rtl_model(reg, length=6, block_size=2)
    sampler = reg.build("sampler", "ancestral", steps=3)
    result = sampler.sample(model, num_samples=2, generator=generator)
    # With T = number of blocks, block b is un-masked entirely at step nb − 1 − b.
    assert torch.equal(result.order, torch.tensor([2, 2, 1, 1, 0, 0]).expand(2, 6))


def test_block_size_must_divide_the_length(reg):
    with pytest.raises(ValueError, match="not divisible by block_size 4"):
        rtl_model(reg, length=6, block_size=4)


def test_nelbo_is_the_exact_right_to_left_nll(reg, generator):
    """With T = L steps each step reveals exactly one position, so the discrete NELBO at the
    step's time is T·CE of that position given the positions to its right: summing over the
    T steps gives −Σ_k log p(x^k | x^{>k}) exactly, which we also compute by hand."""
    length, vocab = 4, 3
    model = rtl_model(reg, length=length, vocab_size=vocab)
    x = torch.randint(0, vocab, (5, length), generator=generator)
    with torch.no_grad():
        via_nelbo = torch.zeros(5, dtype=torch.float64)
        by_hand = torch.zeros(5, dtype=torch.float64)
        for k in range(length):
            t = torch.full((5,), (k + 0.5) / length)
            terms = model.nelbo(x, t=t, steps=length, generator=generator)
            assert torch.equal(terms.velocity_matching, torch.zeros(5))
            via_nelbo += terms.total.double() / length
            z = x.clone()
            z[:, : k + 1] = model.mask_id  # positions ≤ k masked, > k clean
            logp = torch.log_softmax(model.denoise(z).logits.double(), -1)
            by_hand -= logp[torch.arange(5), k, x[:, k]]
        torch.testing.assert_close(via_nelbo, by_hand, rtol=1e-5, atol=1e-5)

        # The single-draw continuous-time estimate is finite and carries no velocity term.
        terms = model.nelbo(x, generator=generator)
        assert terms.total.shape == (5,) and bool(torch.isfinite(terms.total).all())
        assert torch.equal(terms.velocity_matching, torch.zeros(5))


@pytest.fixture
def installed_rtl(tmp_path, monkeypatch):
    """The oemdm-rtl wheel, built from a copy of the sources and unpacked onto sys.path."""
    build_meta = pytest.importorskip(
        "setuptools.build_meta", reason="building the example wheel needs setuptools"
    )
    global_registry.available("order")  # load the global registry before, not with, rtl
    source = shutil.copytree(RTL_DIR, tmp_path / "src")  # the build writes into the tree
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.chdir(source)
    wheel = wheels / build_meta.build_wheel(str(wheels))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "oemdm_rtl", raising=False)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    yield site
    sys.modules.pop("oemdm_rtl", None)


def test_installed_wheel_is_found_through_its_entry_point(installed_rtl, capsys, monkeypatch):
    assert (installed_rtl / "oemdm_rtl.py").is_file()
    reg = Registry()  # entry points, as for any installed plugin
    entry = reg.entry("order", "rtl")
    assert entry.plugin == "rtl" and entry.distribution == "oemdm-rtl 0.1.0"
    assert entry.cls.__module__ == "oemdm_rtl"
    model = OeMDM.from_config(
        {
            "vocab_size": 3,
            "length": 4,
            "backbone": {"name": "transformer", "preset": "tiny"},
            "order": "rtl",
        },
        registry=reg,
    )
    assert bool(torch.isfinite(model.nelbo(torch.zeros(2, 4, dtype=torch.long)).total).all())

    assert main(["plugins", "--json", "--kind", "order"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rtl = next(c for c in listed["components"] if c["name"] == "rtl")
    assert rtl["distribution"] == "oemdm-rtl 0.1.0"
    assert rtl["summary"].startswith("Blocks right to left")

    # `oemdm check-plugin rtl` runs the conformance kit on it (the command reads the
    # process-wide registry; swap in one that sees the unpacked wheel).
    monkeypatch.setattr(sys.modules["oemdm_core.plugin.registry"], "registry", reg)
    assert main(["check-plugin", "rtl"]) == 0
    report = capsys.readouterr().out
    assert "order  rtl   check_order pass" in report  # on every base schedule
    assert report.strip().endswith("1 passed, 0 failed")

    monkeypatch.setenv(DISABLE_ENV, "rtl")
    assert "rtl" not in Registry().available("order")
