"""`oemdm plugins`: components per kind, supplying plugin and distribution, disabled plugins."""

from __future__ import annotations

import json

import pytest

from oemdm_core import KINDS
from oemdm_core.cli.main import main
from oemdm_core.plugin.registry import DISABLE_ENV


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
