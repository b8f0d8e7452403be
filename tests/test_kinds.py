"""The table of component kinds (`oemdm_core.plugin.kinds`) is the one list of kinds: the
registry's kinds and hooks, the hookspecs, the interfaces, the kits and the kinds tables of
the docs all agree with it, and every built-in component passes the kit of its kind."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import oemdm_core
from oemdm_core import interfaces, registry, testing
from oemdm_core.plugin import hookspecs
from oemdm_core.plugin.kinds import COMPONENT_KINDS, HOOK_FOR_KIND, KIND, KINDS

ROOT = Path(__file__).resolve().parents[1]


def test_kinds_and_hooks_are_read_off_the_table():
    assert KINDS == tuple(kind.name for kind in COMPONENT_KINDS) == tuple(KIND)
    assert oemdm_core.KINDS is KINDS and hookspecs.HOOK_FOR_KIND is HOOK_FOR_KIND
    assert HOOK_FOR_KIND == {kind.name: kind.hook for kind in COMPONENT_KINDS}
    assert HOOK_FOR_KIND["order"] == "register_orders"  # the pattern of DESIGN section 3


def test_every_hookspec_is_the_hook_of_one_kind_and_names_its_interface():
    specs = {
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.PROJECT}_spec")
    }
    assert specs == set(HOOK_FOR_KIND.values())
    for kind in COMPONENT_KINDS:
        doc = getattr(hookspecs, kind.hook).__doc__
        assert f"`oemdm_core.{kind.interface}`" in doc, kind.hook


@pytest.mark.parametrize("kind", COMPONENT_KINDS, ids=lambda k: k.name)
def test_the_interface_is_public_and_declares_its_kind(kind):
    interface = getattr(interfaces, kind.interface)
    assert getattr(oemdm_core, kind.interface) is interface
    assert interface.kind == kind.name


@pytest.mark.parametrize("kind", COMPONENT_KINDS, ids=lambda k: k.name)
def test_the_kit_is_public_and_takes_the_registry(kind):
    kit = getattr(testing, kind.kit)
    assert kind.kit in testing.__all__
    parameters = inspect.signature(kit).parameters
    assert parameters["registry"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["registry"].default is None


def builtin_names(kind: str) -> list[str]:
    return [e.name for e in registry.entries(kind) if (e.distribution or "").startswith("oemdm ")]


def names(kind: str) -> str:
    return ", ".join(f"`{n}`" for n in builtin_names(kind))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


# (doc, header, row of one kind): the kinds tables of the docs, rendered from the table.
TABLES = {
    "concepts": (
        "docs/concepts.md",
        "| kind | interface | kit | what it does | built-in names |",
        lambda k: (
            f"| `{k.name}` | `{k.interface}` | `{k.kit}` | {cell(k.description)} | "
            f"{names(k.name)} |"
        ),
    ),
    "plugins": (
        "docs/plugins.md",
        "| hook | register subclasses of | kit | built-in names |",
        lambda k: f"| `{k.hook}(register)` | `{k.interface}` | `{k.kit}` | {names(k.name)} |",
    ),
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_docs_tables_of_kinds_are_the_table(table):
    path, header, row = TABLES[table]
    lines = (ROOT / path).read_text().splitlines()
    assert header in lines, f"{path} has no table with the header {header}"
    start = lines.index(header) + 2  # after the header and its |---| line
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    expected = [row(kind) for kind in COMPONENT_KINDS]
    assert lines[start:end] == expected, f"{path}: the rows should read\n" + "\n".join(expected)


def test_the_testing_guide_gives_each_kits_signature():
    guide = (ROOT / "docs/testing.md").read_text()
    for kind in COMPONENT_KINDS:
        signature = str(inspect.signature(getattr(testing, kind.kit))).replace("'", "")
        assert f"`{kind.kit}{cell(signature)}`" in guide, kind.kit


# -- every built-in component of the four kinds whose kits are new passes its kit -----------------
def tokenizer_json(path: Path) -> str:
    bpe = registry.build("tokenizer", "bpe", vocab_size=300)
    bpe.fit(testing.tokenizer.SAMPLE_TEXT)
    path.write_text(bpe.state()["tokenizer_json"])
    return str(path)


def saved_dataset(path: Path) -> str:
    import datasets

    splits = {
        split: datasets.Dataset.from_dict({"text": [f"{split} document {i}" for i in range(3)]})
        for split in ("train", "validation", "test")
    }
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return str(path)


def text_file(path: Path) -> str:
    path.write_text("one document\n\nanother document\n" * 20)
    return str(path)


# Options for the built-ins whose defaults do not build (they need a file).
NEEDS_OPTIONS = {
    ("tokenizer", "hf"): lambda tmp: {"path": tokenizer_json(tmp / "tokenizer.json")},
    ("dataset", "hf"): lambda tmp: {"path": saved_dataset(tmp / "saved")},
    ("dataset", "text-files"): lambda tmp: {"paths": [text_file(tmp / "a.txt")]},
}
NEW_KITS = ("scorer", "estimator", "tokenizer", "dataset")
BUILTINS = [(kind, name) for kind in NEW_KITS for name in builtin_names(kind)]


@pytest.mark.parametrize(("kind", "name"), BUILTINS, ids=[f"{k}:{n}" for k, n in BUILTINS])
def test_every_builtin_component_passes_the_kit_of_its_kind(kind, name, tmp_path):
    options = NEEDS_OPTIONS[kind, name](tmp_path) if (kind, name) in NEEDS_OPTIONS else {}
    kit = getattr(testing, KIND[kind].kit)
    kit(registry.build(kind, name, **options), registry=registry)


def test_the_second_configurations_of_builtins_pass_too():
    testing.check_tokenizer(registry.build("tokenizer", "char", unknown=False))
    testing.check_tokenizer(registry.build("tokenizer", "bpe", byte_level=False, vocab_size=100))
    testing.check_estimator(registry.build("estimator", "generic", times="importance"))
