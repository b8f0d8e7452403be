"""The component registry: registration by hand, lookups, error messages, disabling plugins.

Every test uses its own `Registry(entry_points=False)` (or a fresh one with entry points when
it checks where built-ins come from).
"""

from __future__ import annotations

import types

import pytest
from pydantic import Field

from oemdm_core import (
    KINDS,
    BaseSchedule,
    ConfigError,
    DuplicateComponentError,
    Options,
    Order,
    Registry,
    UnknownComponentError,
    hookimpl,
)
from oemdm_core.plugin.registry import DISABLE_ENV


class Constant(BaseSchedule):
    """A test schedule α_b(s) = 1 − s with a bounded option."""

    name = "constant_test"

    class Options(Options):
        rate: float = Field(default=1.0, gt=0, le=2, description="A rate in (0, 2].")

    def alpha(self, s):
        return 1.0 - s

    def dalpha(self, s):
        return -1.0 + 0.0 * s


class OtherConstant(Constant):
    """Same name, different class: a clash."""


class Reversed(Order):
    """A test order."""

    name = "reversed_test"

    def forward_schedule(self, x, base, features=None):
        raise NotImplementedError


def plugin_module(name: str, **hooks) -> types.ModuleType:
    """A module object carrying the given hook implementations (like a plugin package)."""
    module = types.ModuleType(name)
    for hook, classes in hooks.items():

        def impl(register, _classes=classes):
            for cls in _classes:
                register(cls)

        impl.__name__ = hook
        setattr(module, hook, hookimpl(impl))
    return module


@pytest.fixture
def reg(monkeypatch) -> Registry:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return Registry(entry_points=False)


def test_register_a_module_and_an_object(reg):
    reg.register_plugin(plugin_module("mine", register_schedules=[Constant]))

    class Obj:
        @hookimpl
        def register_orders(self, register):
            register(Reversed)

    name = reg.register_plugin(Obj(), name="obj_plugin")
    assert name == "obj_plugin"
    assert reg.available("schedule") == ["constant_test"]
    assert reg.available("order") == ["reversed_test"]
    entry = reg.entry("order", "reversed_test")
    assert entry.plugin == "obj_plugin" and entry.distribution is None
    assert entry.summary == "A test order."
    built = reg.build("schedule", "constant_test", rate=0.5)
    assert isinstance(built, Constant) and built.options.rate == 0.5
    assert built.get_options() == {"rate": 0.5}
    assert set(reg.plugins()) >= {"mine", "obj_plugin"}
    reg.unregister_plugin("obj_plugin")
    assert reg.available("order") == []


def test_fresh_registry_starts_empty(reg):
    assert all(reg.available(kind) == [] for kind in KINDS)


def test_unknown_name_lists_available_and_closest(reg):
    reg.register_plugin(plugin_module("mine", register_schedules=[Constant]))
    with pytest.raises(UnknownComponentError) as info:
        reg.build("schedule", "constant_tset")
    message = str(info.value)
    assert "'constant_tset'" in message
    assert "available schedules: constant_test" in message
    assert "did you mean 'constant_test'?" in message
    with pytest.raises(UnknownComponentError, match="valid kinds: .*did you mean 'order'"):
        reg.available("ordr")


def test_duplicate_name_names_both_plugins(reg):
    reg.register_plugin(plugin_module("first", register_schedules=[Constant]))
    with pytest.raises(DuplicateComponentError) as info:
        reg.register_plugin(plugin_module("second", register_schedules=[OtherConstant]))
    message = str(info.value)
    assert "constant_test" in message and "'first'" in message and "'second'" in message
    assert DISABLE_ENV in message
    # Nothing of the rejected plugin stays registered.
    assert reg.get("schedule", "constant_test") is Constant
    assert "second" not in reg.plugins()


def test_bad_option_names_field_value_and_allowed(reg):
    reg.register_plugin(plugin_module("mine", register_schedules=[Constant]))
    with pytest.raises(ConfigError) as info:
        reg.build("schedule", "constant_test", rate=-3.0)
    message = str(info.value)
    assert "rate" in message and "-3.0" in message and "must be > 0" in message
    with pytest.raises(ConfigError, match=r"rate: got 5\.0; must be <= 2"):
        reg.build("schedule", "constant_test", rate=5.0)
    with pytest.raises(ConfigError, match="unknown key; valid keys: rate.*did you mean 'rate'"):
        reg.build("schedule", "constant_test", rat=1.0)
    with pytest.raises(ConfigError, match="rate: got 'fast'"):
        reg.build("schedule", "constant_test", rate="fast")


def test_registration_rejects_malformed_components(reg):
    class NoDescription(Constant):
        name = "nodesc_test"

        class Options(Options):
            rate: float = 1.0

    with pytest.raises(TypeError, match="option 'rate' has no description"):
        reg.register_plugin(plugin_module("bad", register_schedules=[NoDescription]))

    class WrongKind(Reversed):
        name = "wrongkind_test"

    with pytest.raises(TypeError, match="interface kind is 'order'"):
        reg.register_plugin(plugin_module("bad2", register_schedules=[WrongKind]))


def test_disable_env_blocks_named_plugins(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "mine, other")
    reg = Registry(entry_points=False)
    assert reg.disabled == ["mine", "other"]
    with pytest.raises(ValueError, match="blocked"):
        reg.register_plugin(plugin_module("mine", register_schedules=[Constant]), name="mine")
    assert reg.available("schedule") == []
    reg.register_plugin(plugin_module("kept", register_orders=[Reversed]), name="kept")
    assert reg.available("order") == ["reversed_test"]


def test_disable_env_blocks_installed_entry_points(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "block")
    reg = Registry()
    assert "block" not in reg.available("order")
    assert "mdm" in reg.available("order")
    with pytest.raises(UnknownComponentError, match="'block'"):
        reg.get("order", "block")


def test_builtins_come_from_the_oemdm_distribution(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    reg = Registry()
    for kind, name in [
        ("schedule", "linear"),
        ("order", "mdm"),
        ("order", "block"),
        ("order", "ar"),
        ("backbone", "transformer"),
        ("sampler", "ancestral"),
    ]:
        entry = reg.entry(kind, name)
        assert entry.distribution is not None and entry.distribution.split()[0] == "oemdm"
        assert entry.cls.__module__.split(".")[0].startswith("oemdm_")
    assert {"ar", "block", "mdm"} <= set(reg.available("order"))


def test_an_old_style_component_built_by_the_registry_records_its_options():
    """A plugin written before options were defined once: named options in `__init__`,
    `super().__init__()` without them. Built through the registry (configs, checkpoints),
    it must save the options it was built with, not the defaults."""
    import torch
    from pydantic import Field

    from oemdm_core import Options, Order, Registry, WindowedSchedule, block_windows, hookimpl
    from oemdm_core.errors import OeMDMWarning

    class OldStyle(Order):
        name = "old-style"

        class Options(Options):
            block_size: int = Field(default=1, ge=1, description="Positions per block.")

        def __init__(self, block_size: int = 1) -> None:
            super().__init__()
            self.block_size = block_size

        def forward_schedule(self, x, base, features=None):
            lo, hi = block_windows(x.shape[1], self.block_size)
            return WindowedSchedule(base, lo, hi)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_orders(register):
            register(OldStyle)

    reg = Registry(entry_points=False)
    with pytest.warns(OeMDMWarning, match=r"takes the option\(s\) block_size as named"):
        reg.register_plugin(Plugin, name="old")
        order = reg.build("order", "old-style", block_size=4)
    assert order.block_size == 4 and order.get_options() == {"block_size": 4}
    assert torch.equal(
        order.forward_schedule(torch.zeros(1, 8).long(), None).lo, block_windows(8, 4)[0]
    )
