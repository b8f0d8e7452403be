"""Adapters that let other tools drive oemdm models (the top layer: they may use every
layer below and import their tool lazily, so the core never needs it)."""
