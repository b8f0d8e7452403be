"""Argument types shared by the commands: each rejects a bad value in one line naming it."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (`--num-times 0` is an error, not "the default")."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; must be an integer >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}; must be an integer >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer") from None
