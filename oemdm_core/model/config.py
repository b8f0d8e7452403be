"""Pydantic models of the model config: `OeMDM.from_config` accepts these or plain dicts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oemdm_core.errors import ConfigError, format_validation_error
from oemdm_core.plugin.strict import NoBoolNumbers


class ComponentSpec(BaseModel):
    """A component by registry name plus its options, e.g. {"name": "block", "block_size": 4}.

    Options are validated against the component's own options model when it is built.
    """

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="Registry name of the component (see `oemdm plugins`).")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(NoBoolNumbers):
    """Everything needed to build an `OeMDM`."""

    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(
        gt=0, description="V, the number of clean tokens (the mask token is id V)."
    )
    length: int = Field(gt=0, description="L, the sequence length the model is built for.")
    backbone: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="transformer"), description="Denoiser network."
    )
    order: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="mdm"), description="Generation order."
    )
    schedule: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="linear"), description="Base noise schedule α_b."
    )
    estimator: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(name="auto"),
        description="NELBO estimator; 'auto' picks the fastest one that supports the order and backbone.",
    )

    @classmethod
    def parse(cls, cfg: ModelConfig | dict[str, Any], prefix: str = "") -> ModelConfig:
        """Validate a dict (or pass a model through); errors name the dotted path."""
        if isinstance(cfg, ModelConfig):
            return cfg
        if not isinstance(cfg, dict):
            raise ConfigError(
                f"model config must be a dict or ModelConfig, got {type(cfg).__name__}"
            )
        try:
            return cls.model_validate(cfg)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, prefix, list(cls.model_fields))
            ) from None
