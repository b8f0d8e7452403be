"""`python -m oemdm_core.integrations.lm_eval ...`: lm-eval's command line with `oemdm`."""

from oemdm_core.integrations.lm_eval import main

main()
