"""The documentation is executable and its links resolve.

Python code blocks preceded by `<!-- runnable -->` in README.md and docs/*.md are run, in
order, as one script per file (in a subprocess, so that plugins they register do not leak
into other tests), and what they print is checked against what the text claims.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oemdm_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS, *sorted((ROOT / "examples").rglob("README.md"))]

RUNNABLE = re.compile(r"<!-- runnable -->\n```python\n(.*?)```", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def runnable_blocks(path: Path) -> list[str]:
    return RUNNABLE.findall(path.read_text())


@pytest.fixture(scope="module")
def snippet_output(tmp_path_factory) -> dict[str, str]:
    """stdout of each Markdown file's runnable blocks, run as one script per file.

    One subprocess runs all the scripts (with `runpy`, each as `__main__` in a fresh
    namespace), to pay for importing torch once.
    """
    tmp = tmp_path_factory.mktemp("snippets")
    scripts = {}
    for path in MARKDOWN:
        if runnable_blocks(path):
            scripts[path.name] = tmp / f"{path.stem}_snippets.py"
            scripts[path.name].write_text("\n".join(runnable_blocks(path)))
    driver = tmp / "run_all.py"
    driver.write_text(
        "import runpy, sys\n"
        + "".join(
            f"print('=== {name} ===', flush=True)\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
            for name, script in scripts.items()
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "OEMDM_DISABLE_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, str(driver)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
        env=env,
    )
    assert proc.returncode == 0, f"documentation snippets failed:\n{proc.stdout}\n{proc.stderr}"
    parts = re.split(r"^=== (.+) ===$", proc.stdout, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_readme_snippets_run_and_print_what_the_text_says(snippet_output):
    assert len(runnable_blocks(README)) >= 3  # mix components, config dict, plugin
    out = snippet_output["README.md"].strip().splitlines()
    assert {"ar", "block", "lomdm", "mdm"} <= set(eval(out[0]))  # registry.available("order")
    rows = {line.split()[0]: line for line in out if line.split()[0] in ("mdm", "block", "ar")}
    assert set(rows) == {"mdm", "block", "ar"}
    orders = {name: eval(line.split("generated: ")[1]) for name, line in rows.items()}
    nelbos = {name: float(line.split("≈")[1].split()[0]) for name, line in rows.items()}
    assert orders["ar"] == sorted(orders["ar"]) and len(set(orders["ar"])) == 8  # left to right
    assert max(orders["block"][:4]) < min(orders["block"][4:])  # one block after the other
    # "every NELBO is near L·log V ≈ 12.9 nats" (untrained model, 256 draws each)
    assert all(abs(v - 12.9) < 3.0 for v in nelbos.values()), nelbos
    assert "{'name': 'block', 'block_size': 2}" in out
    assert out[-1] == "tensor([[3, 2, 1, 0]])"  # the plugin's order: position 3 first


def test_plugin_guide_snippet_runs(snippet_output):
    out = snippet_output["plugins.md"]
    assert "tensor([1.0000, 0.2689, 0.0000])" in out
    assert "schedule[exponential].rate: got -1.0; must be > 0.0" in out


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


REPORTS = sorted((ROOT / "docs" / "reports").glob("*.md"))


@pytest.mark.parametrize("path", MARKDOWN + REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not links inside code
    links = LINK.findall(text)
    for link in links:
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, fragment = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        assert resolved.exists(), f"{path.name}: link {link!r} points to a missing file"
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved), f"{path.name}: no heading for {link!r}"


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text()
    for page in DOCS:
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_readme_test_command_is_what_ci_runs():
    readme = README.read_text()
    test_line = next(line for line in readme.splitlines() if '-e ".[test]"' in line)
    steps = [step.strip() for step in test_line.split("&&")]
    assert steps[0] == "pip install torch==2.13.0"
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any("torch==2.13.0" in line and "pip install" in line for line in ci)
    assert ci[-1] == steps[-1] == "python -m pytest -q"
    main_line = next(line for line in readme.splitlines() if line.endswith("oemdm train"))
    assert main_line == "pip install torch==2.13.0 && pip install -e . && oemdm train"


def test_cli_commands_in_the_readme_exist(capsys):
    documented = set(re.findall(r"`oemdm ([a-z][a-z-]*)", README.read_text()))
    assert {"train", "eval", "sample", "plugins"} <= documented
    for command in sorted(documented):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0, f"README documents `oemdm {command}`, which fails"
        assert f"usage: oemdm {command}" in capsys.readouterr().out


def test_testing_guide_snippet_runs(snippet_output):
    out = snippet_output["testing.md"]
    assert "order 'ar', causal 1.0" in out  # Σ_x exp(−L(x)) = 1 for the AR order
    assert "4 [[0], [1], [2], [3]]" in snippet_output["plugins.md"]  # the step callback


# `oemdm_core.x.y` and plugin paths (`oemdm_lomdm.power_schedule.PowerSchedule`) as the
# reference docs cite them; the dated reports under docs/reports/ keep the names of their day
CITED_PATH = re.compile(r"\b(oemdm_[a-z]+(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def fields_of(cls: type) -> set[str]:
    """The field names of a dataclass or a pydantic model (not class attributes)."""
    import dataclasses

    from pydantic import BaseModel

    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(cls.model_fields) if issubclass(cls, BaseModel) else set()


def resolve_cited(dotted: str) -> str | None:
    """None when `dotted` names a module under its own name, or an attribute of one, as
    Python's attribute access finds it (`oemdm_core.registry` is the registry instance)
    without a deprecation warning; else what is wrong."""
    import importlib
    import warnings
    from types import ModuleType

    parts = dotted.split(".")
    obj, name = importlib.import_module(parts[0]), parts[0]
    for part in parts[1:]:
        name = f"{name}.{part}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                obj = getattr(obj, part)
        except DeprecationWarning as exc:
            return str(exc)
        except AttributeError:
            if isinstance(obj, type) and part in fields_of(obj):  # no class attribute
                return None if name == dotted else f"{name} is a field; nothing below it"
            if not isinstance(obj, ModuleType):
                return f"{name}: no such attribute"
            try:
                obj = importlib.import_module(name)
            except ModuleNotFoundError:
                return f"{name}: no such module or attribute"
        if isinstance(obj, ModuleType) and obj.__name__ != name:
            return f"{name} is an old path of {obj.__name__}"
    return None


# Cited only to say that these old paths of the flat layout are gone (docs/concepts.md).
GONE = {"oemdm_core.loader", "oemdm_core.trainer", "oemdm_core.commands.eval"}


def test_the_resolver_tells_true_paths_from_old_and_missing_ones():
    assert resolve_cited("oemdm_core.runtime.trainer.fit") is None
    assert resolve_cited("oemdm_core.registry") is None  # the instance, an attribute
    assert resolve_cited("oemdm_core.nelbo.no_such_function") is not None
    assert "0.3" in resolve_cited("oemdm_core.runtime.experiment.describe")
    for old in GONE:
        assert resolve_cited(old) is not None, old


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_module_paths_import(path):
    cited = sorted({m.rstrip(".") for m in CITED_PATH.findall(path.read_text())})
    wrong = {d: why for d in set(cited) - GONE if (why := resolve_cited(d)) is not None}
    assert not wrong, f"{path.name} cites paths that are not true now: {wrong}"


def glossary() -> dict[str, str]:
    """term -> its line, from the `## Glossary` section of docs/concepts.md."""
    text = (ROOT / "docs" / "concepts.md").read_text()
    section = text.split("\n## Glossary\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- \*\*(.+?)\*\* — (.+)$", section, re.M))


def test_the_glossary_has_the_core_terms_once_each():
    terms = glossary()
    needed = ["order", "exponent w", "base schedule", "position schedule", "estimator"]
    needed += ["sampler", "scorer", "kit", "run dir", "checkpoint", "latest checkpoint"]
    assert set(needed) <= set(terms), set(needed) - set(terms)
    text = (ROOT / "docs" / "concepts.md").read_text()
    assert len(re.findall(r"^- \*\*", text.split("\n## Glossary\n", 1)[1], re.M)) == len(terms)


@pytest.mark.parametrize("term", sorted(glossary()))
def test_every_glossary_term_names_code_that_resolves(term):
    line = glossary()[term]
    cited = [m.rstrip(".") for m in CITED_PATH.findall(line)]
    files = re.findall(r"`((?:[a-z_]+/)+[a-z_]*\.py)`", line)
    assert cited or files, f"glossary term {term!r} names no code"
    for dotted in cited:
        assert resolve_cited(dotted) is None, f"{term}: {dotted}: {resolve_cited(dotted)}"
    for file in files:  # relative to oemdm_core/, or to the repository root
        assert (ROOT / "oemdm_core" / file).is_file() or (ROOT / file).is_file(), (term, file)
