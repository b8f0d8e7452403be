"""Generation orders: per-position forward and reverse schedules built on a base schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import Tensor, nn

from oemdm_core.interfaces.backbone import Backbone, DenoiserOutput
from oemdm_core.interfaces.position_schedule import PositionSchedule
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.plugin.component import Component


class Order(Component, nn.Module, ABC):
    """Maps a conditioning input to a `PositionSchedule`.

    Class attributes (or, where they follow from an option, properties) describe what the
    order needs; the model (never the order) runs the backbone:

    - `learned`: the forward schedule depends on parameters, so the estimator adds the
      score-function term for them (see `oemdm_core.nelbo.terms`).
    - `needs_features`: `forward_schedule` reads backbone hidden states of the clean `x`
      (`features: [B, L, D]`) and `reverse_schedule` those of `z_t` (`out.hidden`).
    - `needs_logits`: `reverse_schedule` reads the denoiser logits at `z_t` (`out.logits`).
    With either flag set, the model passes the denoiser output at (z_t, t) to
    `reverse_schedule` as `out` (from the same denoiser call: no extra pass).
    - `has_reverse_scheduler`: the reverse schedule is a learned network that
      `reverse_scheduler_enabled = False` switches off (inference-time ablation: the order's
      random-order fallback with the same denoiser).

    How the generic estimator trains a learned order: read-only properties (fixed orders keep
    the defaults below; a learned order overrides them with properties over its frozen
    `options`, so they are defined in one place and cannot drift from the options):

    - `needs_features` (above) may likewise follow from an option (LoMDM's `features`).
    - `shared_time`: the `num_draws` draws of one sequence share one t, so the
      leave-one-out baseline removes only the mask noise (times stay low-discrepancy
      across sequences).
    - `times`: how the generic estimator (with its default `times: auto`) draws training
      times: `uniform`, or `importance` (the proposal of `oemdm_core.nelbo.time_proposal`, with
      weights 1/q(t)); both unbiased.
    - `t_min`: training times are drawn on [t_min, 1] (weighted by 1 − t_min), so training
      estimates ∫_{t_min}^1 of the integrand, not L; 0 (the default) is unbiased for L.
    - `feature_gradient`: the clean-x features f(x) (`needs_features`) carry gradients into
      the backbone; False runs that pass under `torch.no_grad` (stop-gradient schedulers).

    `reverse_scheduler_enabled` is no option but an inference-time switch (the ablation
    above), the one attribute a caller sets on a built order.

    Fixed orders (mdm, block, ar) do not depend on the data: their reverse schedule equals
    the forward one, so the velocity-matching term is exactly 0.
    """

    kind = "order"
    learned: ClassVar[bool] = False
    needs_logits: ClassVar[bool] = False
    has_reverse_scheduler: ClassVar[bool] = False
    reverse_scheduler_enabled: bool = True

    def __init__(self, **options: Any) -> None:
        nn.Module.__init__(self)  # first: Component.__init__ sets an attribute
        Component.__init__(self, **options)

    @property
    def num_draws(self) -> int:
        """Draws of (t, z_t) per sequence in one NELBO estimate (K for learned orders)."""
        return 1

    @property
    def needs_features(self) -> bool:
        """Whether the schedules read backbone hidden states (see the class docstring)."""
        return False

    @property
    def shared_time(self) -> bool:
        """Whether the `num_draws` draws of a sequence share one training time."""
        return False

    @property
    def times(self) -> str:
        """How the generic estimator draws training times: `uniform` or `importance`."""
        return "uniform"

    @property
    def t_min(self) -> float:
        """Training times are drawn on [t_min, 1]; 0 is unbiased."""
        return 0.0

    @property
    def feature_gradient(self) -> bool:
        """Whether the clean-x features carry gradients into the backbone."""
        return True

    def block_structure(self) -> int | None:
        """Block size B' if this is a left-to-right block order, else None (the default).

        A block order (ar: B' = 1, block: B' = block_size) is fixed and data-independent;
        block b = i // B' of nb = L / B' blocks un-masks in the time window
        [(nb−1−b)/nb, (nb−b)/nb], so at any time inside that window blocks < b are clean,
        blocks > b are fully masked and only block b has a nonzero velocity. Structured
        estimators (teacher forcing, the vectorised block estimator) rely on exactly this.
        """
        return None

    def generation_weights(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> Tensor | None:
        """Per-position Plackett–Luce weights `[B, L]` of the forward order of clean `x`
        (higher = masked later, so generated earlier in reverse time), or None for orders
        that are not Plackett–Luce (the default). Used for logging and plots."""
        return None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups of this order's parameters whose gradient norms the trainer logs
        separately (e.g. `forward_scheduler`, `reverse_scheduler`); none by default."""
        return {}

    def bind(self, backbone: Backbone) -> None:  # noqa: B027 - optional hook
        """Called once by the model with its backbone (learned orders size their heads here)."""

    def check_length(self, length: int) -> None:  # noqa: B027 - optional hook
        """Raise `ValueError` if this order cannot serve sequences of `length`."""

    @abstractmethod
    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PositionSchedule:
        """Forward schedule α_F^i(x, ·) for clean tokens `x: [B, L]`."""

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, base: BaseSchedule, out: DenoiserOutput | None = None
    ) -> PositionSchedule:
        """Reverse schedule α_R^i(z_t, ·) at state `z_t: [B, L]`, time `t: [B]`; `out` is the
        denoiser output at (z_t, t) (`logits [B, L, V]`, `hidden [B, L, D]`) when the order
        declares `needs_features` or `needs_logits`.

        Default, right for fixed orders: the forward schedule (it ignores the data)."""
        return self.forward_schedule(z_t, base, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_options()})"
