"""`python -m oemdm_core.cli …` (e.g. under torchrun) runs the `oemdm` command."""

import sys

from oemdm_core.cli.entry import main

sys.exit(main())
