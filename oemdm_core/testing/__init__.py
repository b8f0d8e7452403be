"""Conformance kits for plugin authors."""

from oemdm_core.testing.kits import *  # noqa: F403
from oemdm_core.testing.kits import __all__  # noqa: F401
