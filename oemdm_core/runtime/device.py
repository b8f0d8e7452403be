"""Device names given by users (`--device`, `training.device`), checked with one-line errors."""

from __future__ import annotations

import torch

from oemdm_core.errors import ConfigError

VALID = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str, what: str = "--device") -> torch.device:
    """The `torch.device` for `name` ("auto" = cuda if available, else cpu); `what` is the
    option named in errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{what}: got {name!r}; expected {VALID}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: got {name!r}, but CUDA is not available; use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{what}: got {name!r}, but only {count} CUDA device(s) are visible "
                f"(cuda:0 … cuda:{count - 1})"
            )
    elif device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"{what}: got {name!r}, but MPS is not available; use cpu")
    elif device.type not in ("cpu", "cuda", "mps") and not hasattr(torch, device.type):
        raise ConfigError(f"{what}: got {name!r}; expected {VALID}")
    return device
