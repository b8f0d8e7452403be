"""The `--model_args` of lm-eval's `oemdm` model, validated with one-line errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from oemdm_core.errors import ConfigError, format_validation_error
from oemdm_core.plugin.strict import NoBoolNumbers

LIKELIHOODS = ("auto", "exact-order", "nelbo")


class ModelArgs(NoBoolNumbers):
    """What `lm_eval --model oemdm --model_args KEY=VALUE,...` accepts."""

    model_config = ConfigDict(extra="forbid")

    pretrained: str = Field(
        description="Run directory or checkpoint directory of `oemdm train` (as `oemdm eval`)."
    )
    device: str = Field(default="cpu", description="auto, cpu, cuda, cuda:N or mps.")
    batch_size: int = Field(default=8, ge=1, description="Windows scored per denoiser call.")
    likelihood: Literal["auto", "exact-order", "nelbo"] = Field(
        default="auto",
        description="auto: exact-order for left-to-right orders (ar), nelbo otherwise; "
        "exact-order: exact log-likelihood of the greedy order of `scorer`; nelbo: −NELBO, "
        "a lower bound.",
    )
    scorer: str = Field(
        default="confidence",
        description="exact-order: a deterministic scorer (confidence, margin, entropy, velocity).",
    )
    per_step: int = Field(default=1, ge=1, description="exact-order: positions un-masked per step.")
    num_times: int = Field(default=16, ge=1, description="nelbo: quadrature points over t.")
    seed: int = Field(default=0, ge=0, description="Seed of the NELBO masks and of sampling.")
    sampler: str | None = Field(
        default=None, description="generate_until: sampler name (default: the run's sampler)."
    )
    steps: int | None = Field(
        default=None, ge=1, description="generate_until: the sampler's steps option T."
    )


def parse_model_args(raw: dict[str, Any]) -> ModelArgs:
    """`ModelArgs` from lm-eval's keyword arguments; `ConfigError` (one line per problem)
    naming the bad value and what is valid."""
    try:
        return ModelArgs(**raw)
    except ValidationError as exc:
        message = format_validation_error(exc, "model_args", sorted(ModelArgs.model_fields))
        raise ConfigError(message) from None
