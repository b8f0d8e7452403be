"""`oemdm plugins`: components per kind, supplying plugin and distribution, disabled plugins;
`oemdm check-plugin`: the conformance kits on a plugin's components."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from pydantic import Field

from oemdm_core import KINDS, BaseSchedule, Options, Registry, Sampler, SampleResult, hookimpl
from oemdm_core.cli import main
from oemdm_core.plugin.registry import DISABLE_ENV
from oemdm_core.testing import ReferenceBackbone


@pytest.fixture(autouse=True)
def no_disabled_plugins(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)


def run_json(capsys, *args: str) -> dict:
    assert main(["plugins", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_table_lists_every_kind_with_source_and_summary(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for heading in ("schedules:", "orders:", "backbones:", "samplers:", "estimators:"):
        assert heading in out
    orders = out.split("orders:")[1].split("\n\n")[0]
    ar_line = next(line for line in orders.splitlines() if line.split()[:1] == ["ar"])
    assert "ar (oemdm 0.1.0)" in ar_line
    assert "AR NLL" in ar_line  # the class docstring's summary
    assert "plugins:" in out and "oemdm_transformer" in out
    assert "DISABLED" not in out


def test_json_matches_the_registry(capsys, fresh_registry):
    data = run_json(capsys)
    got = {(c["kind"], c["name"]): c for c in data["components"]}
    expected = {(e.kind, e.name): e for e in fresh_registry.entries()}
    assert set(got) == set(expected)
    for key, entry in expected.items():
        assert got[key]["plugin"] == entry.plugin
        assert got[key]["distribution"] == entry.distribution
    assert got[("order", "block")]["summary"].startswith("Block b = i // block_size")
    assert "[(nb−1−b)/nb, (nb−b)/nb]" in got[("order", "block")]["summary"]  # whole paragraph
    assert data["disable_env"] == DISABLE_ENV and data["disabled"] == []
    names = {p["name"] for p in data["plugins"]}
    assert {"schedules", "mdm", "block", "ar", "transformer", "samplers"} <= names


def test_kind_filter(capsys):
    data = run_json(capsys, "--kind", "order")
    assert {c["kind"] for c in data["components"]} == {"order"}
    assert {"ar", "block", "mdm"} <= {c["name"] for c in data["components"]}


def test_unknown_kind_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["plugins", "--kind", "orders"])
    err = capsys.readouterr().err
    assert "invalid choice: 'orders'" in err and "order" in err


def test_disabled_plugins_are_shown_and_their_components_absent(capsys, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "block, nosuchplugin")
    data = run_json(capsys, "--kind", "order")
    assert "block" not in {c["name"] for c in data["components"]}
    assert data["disabled"] == ["block", "nosuchplugin"]
    block = next(p for p in data["plugins"] if p["name"] == "block")
    assert block["disabled"] is True and block["distribution"] == "oemdm 0.1.0"
    assert all(not p["disabled"] for p in data["plugins"] if p["name"] != "block")

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    plugins_section = out.split("\nplugins:\n")[1]
    block_line = next(x for x in plugins_section.splitlines() if x.split()[:1] == ["block"])
    assert f"DISABLED by {DISABLE_ENV}" in block_line
    assert "nosuchplugin, which no installed plugin is called" in out


def test_every_kind_is_a_valid_filter(capsys):
    for kind in KINDS:
        data = run_json(capsys, "--kind", kind)
        assert all(c["kind"] == kind for c in data["components"])


# -- oemdm check-plugin --------------------------------------------------------------------------
def test_check_plugin_passes_builtin_components(capsys):
    assert main(["check-plugin", "schedules"]) == 0
    out = capsys.readouterr().out
    for name in ("linear", "cosine", "polynomial"):
        assert f"schedule  {name}" in out
    assert "3 passed, 0 failed" in out
    assert main(["check-plugin", "order:block"]) == 0
    assert "order  block  check_order pass" in capsys.readouterr().out
    assert main(["check-plugin", "sampler:ar"]) == 0
    assert "sampler  ar    check_sampler pass" in capsys.readouterr().out
    assert main(["check-plugin", "backbone:transformer"]) == 0
    assert "backbone  transformer  check_backbone pass" in capsys.readouterr().out


def test_check_plugin_runs_the_kit_of_every_kind(capsys):
    assert main(["check-plugin", "scorer:random"]) == 0
    assert "scorer  random  check_scorer pass" in capsys.readouterr().out
    assert main(["check-plugin", "estimators"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:] if line.startswith("estimator")]
    assert ["estimator", "block-vectorized", "check_estimator", "pass"] in rows
    assert "3 passed, 0 failed" in out


def test_check_plugin_skips_what_its_default_options_cannot_build(capsys):
    assert main(["check-plugin", "data"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line for line in out.splitlines()[1:] if line.strip()}
    assert "check_tokenizer pass" in rows["tokenizer", "char"]
    assert "check_dataset   pass" in rows["dataset", "pydoc"]
    skipped = rows["dataset", "text-files"]
    assert "skipped (its default options do not build:" in skipped and "needs paths" in skipped
    assert "4 passed, 0 failed, 3 skipped" in out


def swap_registry(monkeypatch, registry: Registry) -> None:
    """The command reads the process-wide registry: swap in `registry`."""
    monkeypatch.setattr(sys.modules["oemdm_core.plugin.registry"], "registry", registry)


def test_check_plugin_builds_orders_without_the_transformer(monkeypatch, capsys):
    monkeypatch.setenv(DISABLE_ENV, "transformer,tasks")
    registry = Registry()
    assert registry.available("backbone") == []
    swap_registry(monkeypatch, registry)
    assert main(["check-plugin", "order:lomdm"]) == 0  # reads backbone features
    assert main(["check-plugin", "sampler:block"]) == 0
    assert "FAIL" not in capsys.readouterr().out


class NotMaskedAtOne(BaseSchedule):
    """α_b(1) = 0.1: never fully masked."""

    name = "not_masked_at_one"

    def alpha(self, s):
        return 1.0 - 0.9 * s

    def dalpha(self, s):
        return torch.full_like(s, -0.9)


class KeepsNothing(Sampler):
    """Overwrites the positions the caller fixed."""

    name = "keeps_nothing"

    class Options(Options):
        temperature: float = Field(default=1.0, ge=0.0, description="Unused.")

    def __init__(self, **options) -> None:
        self.options = self.validate_options(**options)

    def sample(self, model, num_samples, length=None, generator=None, fixed=None):
        length = model.length if length is None else length
        tokens = torch.zeros(num_samples, length, dtype=torch.long)
        order = torch.arange(length).expand(num_samples, -1).clone()
        return SampleResult(tokens=tokens, order=order, nfe=length)


class LeakyCausal(ReferenceBackbone):
    """Declares causal attention but reads the whole sequence."""

    name = "leaky_causal"

    class Options(ReferenceBackbone.Options):
        attention: str = Field(default="causal", description="Declared: causal.")

    def own_mask(self, n):
        return torch.ones(n, n, dtype=torch.bool)


class BrokenPlugin:
    """A plugin registered by hand that supplies a bad schedule, sampler and backbone."""

    @staticmethod
    @hookimpl
    def register_schedules(register):
        register(NotMaskedAtOne)

    @staticmethod
    @hookimpl
    def register_samplers(register):
        register(KeepsNothing)

    @staticmethod
    @hookimpl
    def register_backbones(register):
        register(LeakyCausal)


def test_check_plugin_fails_on_a_broken_plugin(monkeypatch, capsys):
    fresh = Registry()
    fresh.register_plugin(BrokenPlugin(), name="broken_plugin")
    swap_registry(monkeypatch, fresh)
    assert main(["check-plugin", "broken_plugin"]) == 1
    out = capsys.readouterr().out
    assert "0 passed, 3 failed" in out
    lines = {line.split()[1]: line for line in out.splitlines()[1:4]}
    assert (
        "FAIL: schedule 'not_masked_at_one' (NotMaskedAtOne): alpha(1) = 0 fails at s=1"
        in (lines["not_masked_at_one"])
    )
    assert "fixed positions are kept fails" in lines["keeps_nothing"]
    assert "causal: logits at i do not read tokens ≥ i fails" in lines["leaky_causal"]


def test_check_plugin_unknown_name_lists_plugins(capsys):
    assert main(["check-plugin", "schedulez"]) == 2
    err = capsys.readouterr().err
    assert "schedulez" in err and "did you mean 'schedules'" in err
    assert main(["check-plugin", "order:blok"]) == 2
    assert "did you mean 'block'" in capsys.readouterr().err


def test_the_kind_filter_prints_only_that_kind(capsys):
    assert main(["plugins", "--kind", "sampler"]) == 0
    out = capsys.readouterr().out
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sections == ["samplers:", "plugins:"]
    plugins = [line.split()[0] for line in out.split("\nplugins:\n")[1].splitlines()]
    assert set(plugins) == {"samplers", "topk"}  # those that supply samplers, not 'mdm'
