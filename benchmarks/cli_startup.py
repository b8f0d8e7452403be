"""Start-up time of the `oemdm` CLI against `python -c "import torch"` on the same machine.

Each command runs in a fresh interpreter, `--repeats` times (interleaved, so that machine
load hits all of them alike); the medians are compared. Target: `oemdm --help` and
`oemdm config show` take under half the time of importing torch (the CLI imports torch only
in the commands that need it).

    python benchmarks/cli_startup.py              # 5 repeats
    python benchmarks/cli_startup.py --repeats 9 --json out.json
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import harness

COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "oemdm --help": [sys.executable, "-m", "oemdm_core.cli", "--help"],
    "oemdm config show": [sys.executable, "-m", "oemdm_core.cli", "config", "show"],
    "oemdm train --help": [sys.executable, "-m", "oemdm_core.cli", "train", "--help"],
}
TARGET_RATIO = 0.5


def wall_time(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = harness.new_parser(__doc__)
    parser.add_argument("--repeats", type=harness.positive_int, default=5)
    harness.add_json(parser)
    args = harness.parse(parser, argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # warm the file cache once
        wall_time(command)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["import torch"]
    print(harness.run_header(__file__, argv))
    rows = [[name, f"{median:.3f}", f"{median / base:.2f}"] for name, median in medians.items()]
    print(harness.table(["command", "median s", "÷ import torch"], rows))
    ok = all(medians[n] < TARGET_RATIO * base for n in ("oemdm --help", "oemdm config show"))
    print(
        f"\ntarget (< {TARGET_RATIO} × import torch for --help and config show): "
        + ("met" if ok else "NOT met")
    )
    if args.json:
        harness.write_results(args.json, {"repeats": args.repeats, "median_s": medians})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
