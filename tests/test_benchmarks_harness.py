"""The benchmarks package: its shared harness, and every script running both as
`python benchmarks/X.py` and as `python -m benchmarks.X`."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402

MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")
SCRIPTS = [
    m for m in MODULES if 'if __name__ == "__main__":' in (BENCHMARKS / f"{m}.py").read_text()
]


def test_seeds_threads_out_and_json_options(tmp_path):
    p = harness.new_parser("doc")
    harness.add_seeds(p, "0,1")
    harness.add_threads(p)
    harness.add_out(p, "where")
    harness.add_json(p)
    before = torch.get_num_threads()
    try:
        args = harness.parse(p, ["--seeds", "3,5", "--threads", "1", "--out", str(tmp_path)])
        assert args.seeds == (3, 5) and torch.get_num_threads() == 1
        assert args.out == tmp_path and args.json is None
        assert harness.parse(p, []).seeds == (0, 1)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0,x"], "--seeds: got '0,x'; expected comma-separated integers, e.g. 0,1"),
        (["--seeds", ","], "--seeds: got ','; expected comma-separated integers"),
        (["--threads", "0"], "--threads: got 0; must be an integer >= 1"),
    ],
)
def test_bad_options_are_one_line_naming_the_value(argv, message, capsys):
    p = harness.new_parser("doc")
    harness.add_seeds(p)
    harness.add_threads(p)
    with pytest.raises(SystemExit) as info:
        harness.parse(p, argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_tables_by_hand():
    assert harness.table_row(["a", 1, 2.5]) == "| a | 1 | 2.5 |"
    assert harness.table_head(["x", "y"], ["", "right"]) == "| x | y |\n|---|---:|"
    assert harness.table(["x", "y"], [["1", "2"], ["3", "4"]]) == (
        "| x | y |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
    )


def test_run_header_names_the_command_machine_and_date():
    header = harness.run_header("/any/where/study.py", ["--seeds", "0"], "the box")
    lines = header.splitlines()
    assert lines[0] == "Command: `python benchmarks/study.py --seeds 0`  "
    assert lines[1] == "Machine: the box  "
    assert re.fullmatch(r"Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC  ", lines[2])
    assert f"torch {torch.__version__}" in harness.machine()


def test_write_results_makes_folders_and_valid_json(tmp_path):
    path = harness.write_results(tmp_path / "a" / "b.json", {"se": math.nan, "rows": [1.5]})
    assert json.loads(path.read_text()) == {"se": None, "rows": [1.5]}


LOOP = """
import importlib, runpy, sys
from pathlib import Path
mode, names = sys.argv[1], sys.argv[2:]
if mode == "file":  # what `python benchmarks/X.py` puts first on sys.path
    sys.path.insert(0, str(Path("benchmarks").resolve()))
else:
    assert not any(p.endswith("benchmarks") for p in sys.path), sys.path
scripts = [n for n in names if 'if __name__ == "__main__":' in Path(f"benchmarks/{n}.py").read_text()]
for name in sorted(set(names) - set(scripts)):  # the modules the scripts share
    importlib.import_module(name if mode == "file" else f"benchmarks.{name}")
for name in scripts:
    sys.argv = [f"benchmarks/{name}.py", "--help"]
    try:
        if mode == "file":
            runpy.run_path(f"benchmarks/{name}.py", run_name="__main__")
        else:
            runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        assert exc.code == 0, (name, exc.code)
    else:
        raise AssertionError(f"{name} --help did not exit")
print("ok", len(names))
"""


def python(*args: str) -> subprocess.CompletedProcess:
    """`python *args` in the repository root."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("mode", ["file", "module"])
def test_every_script_runs_as_a_file_and_as_a_module(mode):
    proc = python("-c", LOOP, mode, *MODULES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(f"ok {len(MODULES)}")
    # the globs found the package (a moved folder would make this loop vacuous)
    assert {"compare_orders", "order_study", "shape_metrics", "train_speed"} <= set(SCRIPTS)
    assert {"harness", "compare_orders_text"} <= set(MODULES) - set(SCRIPTS)


def test_a_script_runs_as_python_dash_m_for_real():
    proc = python("-m", "benchmarks.lookup_chain_task", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--seeds" in proc.stdout and "--threads" in proc.stdout
