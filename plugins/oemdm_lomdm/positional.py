"""The `positional` order: one learned exponent per position, with no context.

    w_i = c1 + c2 · NormSig(θ)_i,   θ ∈ R^L free parameters,   α^i(t) = 1 − t^{w_i}

(or, with `spread: log`, w_i = c1 · r^{NormSig(θ)_i}, r = (c1 + c2)/(c1 − c2); see
`oemdm_lomdm.lomdm.spread_exponents`).

It is LoMDM's parameterisation with the scheduler network replaced by a free vector, so it
isolates the order gradient: the forward schedule reads no x, the mask pattern says nothing
about x, and the exact reverse schedule is the forward one (no reverse scheduler, no
velocity-matching term). Trained by the same machinery as `lomdm` (`learned`: K draws,
the leave-one-out score-function term and the pathwise gradient through the velocities).

`init` sets θ at the start: `flat` (θ = 0: the polynomial schedule 1 − t^{c1}, MDM's
order), `left_to_right` / `right_to_left` (θ linear in the position from +scale to −scale,
or the reverse). Freeze θ (`requires_grad_(False)`) to use a fixed soft order. Of the shared learned-order
options, `stop_gradient` has no effect here (the order reads no features or logits).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import Self

from oemdm_core.interfaces import Backbone, BaseSchedule, DenoiserOutput
from oemdm_lomdm.lomdm import Spread, spread_exponents
from oemdm_lomdm.power_schedule import PowerSchedule
from oemdm_lomdm.training_options import LearnedOrder, LearnedOrderOptions


class PositionalOrder(LearnedOrder):
    """α^i(t) = 1 − t^{w_i}, w = c1 + c2·NormSig(θ), θ `[max_length]` a free parameter."""

    name = "positional"

    class Options(LearnedOrderOptions):
        c1: float = Field(default=0.7, gt=0, allow_inf_nan=False, description="Centre of w.")
        c2: float = Field(
            default=0.65, ge=0, allow_inf_nan=False, description="Spread: w ∈ (c1 − c2, c1 + c2)."
        )
        spread: Spread = Field(
            default="linear", description="linear: c1 + c2·NormSig(θ); log: c1·r^NormSig(θ)."
        )
        init: Literal["flat", "left_to_right", "right_to_left"] = Field(
            default="flat", description="θ at the start: 0, or linear in the position."
        )
        init_scale: float = Field(
            default=4.0, ge=0, allow_inf_nan=False, description="|θ| at the ends for linear init."
        )

        @model_validator(mode="after")
        def _c2_below_c1(self) -> Self:
            if not self.c1 > self.c2:
                raise ValueError(
                    f"c2 must be smaller than c1 (got c1={self.c1}, c2={self.c2}); "
                    "c1 > c2 >= 0 keeps w > 0"
                )
            return self

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.theta: nn.Parameter | None = None

    @property
    def times(self) -> str:
        """w down to c1 − c2: uniform t has infinite variance for w < ½."""
        return "importance"

    def bind(self, backbone: Backbone) -> None:
        """Create θ, one entry per position of `backbone`."""
        if self.theta is not None:
            return
        o, n = self.options, backbone.max_length
        ramp = torch.linspace(o.init_scale, -o.init_scale, n) if n > 1 else torch.zeros(n)
        start = {"flat": torch.zeros(n), "left_to_right": ramp, "right_to_left": -ramp}
        self.theta = nn.Parameter(start[o.init])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """θ, the forward (and, the same, reverse) scheduler's parameters."""
        return {"forward_scheduler": [self.theta] if self.theta is not None else []}

    def exponents(self, length: int) -> Tensor:
        """w `[length]` for the first `length` positions (NormSig centred over them)."""
        if self.theta is None:
            raise RuntimeError(
                "positional order is not bound to a backbone; build it inside OeMDM "
                "(which calls bind)"
            )
        o = self.options
        return spread_exponents(self.theta[:length], o.c1, o.c2, o.spread)

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PowerSchedule:
        """α^i = 1 − t^{w_i} for every row of `x: [B, L]`."""
        return PowerSchedule(self.exponents(x.shape[1]).expand(x.shape[0], -1))

    def generation_weights(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> Tensor:
        """w `[B, L]`, the same for every row of `x: [B, L]`."""
        return self.exponents(x.shape[1]).expand(x.shape[0], -1)

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, base: BaseSchedule, out: DenoiserOutput | None = None
    ) -> PowerSchedule:
        """The forward schedule: with no context it is the exact reverse."""
        return self.forward_schedule(z_t, base)
