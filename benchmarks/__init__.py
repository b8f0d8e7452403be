"""The benchmark and study scripts (the lab notebook; not part of the `oemdm` package).

Each script runs as `python benchmarks/X.py …` or `python -m benchmarks.X …`. The scripts
import one another and the shared `harness` by file name (`import harness`), which resolves
when Python runs a file from this folder; importing this package puts the folder on
`sys.path` so that the same names resolve under `python -m` too.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
