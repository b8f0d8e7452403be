"""Plugin machinery: the component base and options, hook specifications, the registry.

Imports nothing from the layers above (and not torch), so that the CLI starts fast.
"""
