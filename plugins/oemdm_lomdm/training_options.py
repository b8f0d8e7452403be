"""Options shared by the learned orders: how the generic estimator draws their training
times and what their schedulers' gradients reach (see docs/math.md, "How LoMDM is trained"),
and the base class that reads them."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from oemdm_core import Options, Order


class LearnedOrderOptions(Options):
    """K draws per sequence, stop-gradient schedulers, shared times, t_min."""

    K: int = Field(
        default=2, ge=1, description="Draws per sequence for the leave-one-out baseline."
    )
    stop_gradient: bool = Field(
        default=True,
        description="Schedulers read stop-gradient copies of the denoiser's features or logits, "
        "so only the NELBO through the logits trains the denoiser; false: every term does.",
    )
    shared_time: bool = Field(
        default=True,
        validate_default=True,
        description="The K draws of a sequence share one t (needs K >= 2).",
    )
    t_min: float = Field(
        default=0.0,
        ge=0.0,
        lt=0.5,
        description="Training times on [t_min, 1]; 0 is unbiased, > 0 drops ∫_0^t_min.",
    )

    @field_validator("shared_time")
    @classmethod
    def _shared_needs_draws(cls, shared: bool, info: ValidationInfo) -> bool:
        if shared and info.data.get("K") == 1:
            raise ValueError(
                "shared_time=true needs K >= 2 draws per sequence (got K=1); "
                "set shared_time=false or K >= 2"
            )
        return shared


class LearnedOrder(Order):
    """Base of the learned orders: `learned`, and the training declarations of `Order`
    (`num_draws`, `shared_time`, `t_min`) read from the frozen `LearnedOrderOptions`."""

    learned = True

    class Options(LearnedOrderOptions):
        pass

    options: LearnedOrderOptions

    @property
    def num_draws(self) -> int:
        return self.options.K

    @property
    def shared_time(self) -> bool:
        return self.options.shared_time

    @property
    def t_min(self) -> float:
        return self.options.t_min
