"""A third-party plugin that fails to import names itself, its entry point and how to
disable it, and the other plugins keep working (issue 24, item 6)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from oemdm_core import Registry
from oemdm_core.errors import OeMDMWarning


@pytest.fixture
def broken_dist(tmp_path, monkeypatch):
    """A fake installed distribution whose `oemdm` entry point names a missing module."""
    info = tmp_path / "site" / "oemdm_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: oemdm-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[oemdm]\nbroken = oemdm_no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tmp_path / "site"


def test_a_plugin_that_fails_to_import_is_named_and_skipped(broken_dist):
    registry = Registry()
    with pytest.warns(OeMDMWarning) as caught:
        orders = registry.available("order")
    (message,) = [str(w.message) for w in caught if "failed to load" in str(w.message)]
    assert "plugin 'broken'" in message
    assert "entry point 'broken = oemdm_no_such_module_xyz'" in message
    assert "oemdm-broken 0.1" in message and "ModuleNotFoundError" in message
    assert "OEMDM_DISABLE_PLUGINS=broken" in message
    assert "mdm" in orders  # the other plugins still load


def test_the_cli_still_works_and_the_warning_is_one_line(broken_dist):
    env = {**os.environ, "PYTHONPATH": str(broken_dist)}
    proc = subprocess.run(
        [sys.executable, "-m", "oemdm_core.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "broken" in line]
    assert len(lines) == 1 and lines[0].startswith("oemdm: warning: plugin 'broken'")
    quiet = subprocess.run(
        [sys.executable, "-m", "oemdm_core.cli", "plugins"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "OEMDM_DISABLE_PLUGINS": "broken"},
    )
    assert quiet.returncode == 0 and "broken" not in quiet.stderr
