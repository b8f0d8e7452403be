"""Start-up time of the `oemdm` CLI against `python -c "import torch"` on the same machine.

Each command runs in a fresh interpreter, `--repeats` times (interleaved, so that machine
load hits all of them alike); the medians are compared. Target: `oemdm --help` and
`oemdm config show` take under half the time of importing torch (the CLI imports torch only
in the commands that need it).

    python benchmarks/cli_startup.py              # 5 repeats
    python benchmarks/cli_startup.py --repeats 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="Also write the medians as JSON.")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache once
        wall_time(argv)
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["import torch"]
    print(f"{'command':<22} {'median s':>9} {'÷ import torch':>15}")
    for name, median in medians.items():
        print(f"{name:<22} {median:>9.3f} {median / base:>15.2f}")
    ok = all(medians[n] < TARGET_RATIO * base for n in ("oemdm --help", "oemdm config show"))
    print(
        f"target (< {TARGET_RATIO} × import torch for --help and config show): "
        + ("met" if ok else "NOT met")
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeats": args.repeats, "median_s": medians}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
