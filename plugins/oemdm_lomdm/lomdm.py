"""The `lomdm` order: a learned, context-dependent generation order (LoMDM).

Forward scheduler (reads the clean x):   w^i(x)   = c1 + c2 · NormSig(g_φ(f(x)))_i
Reverse scheduler (reads the state z_t): ŵ^i(z_t) = c1 + c2 · NormSig(h_ψ(f(z_t)))_i
with α^i(t) = 1 − t^{w^i}, velocity w^i / t, and NormSig(v)_i = σ(v_i) − mean_j σ(v_j).

`c1 > c2 ≥ 0` keeps w in (c1 − c2, c1 + c2) ⊂ (0, ∞). `(c1, c2) = (1, 0)` is MDLM with the
linear schedule; `c2 = 0` the polynomial schedule 1 − t^{c1}. The base schedule of the model
is not used: by time-warp invariance it would only reparametrise time.

Features f: by default the shared backbone's final hidden states (one extra backbone pass on
the clean x per training step, plus the hidden states at z_t that the denoiser call produces
anyway). With `features: encoder` a small separate transformer encoder computes f for both x
and z_t, and the backbone needs no hidden states.

Training (the paper's recipe is the default; each choice is an option, so it can be ablated):
- `learned = True`: the generic estimator draws K (t, z_t) pairs per sequence and adds the
  score-function term (f − b)·∇log q(z_t | x) with a leave-one-out baseline; the pathwise
  gradient through w flows through the velocities (see `oemdm_core.nelbo.monte_carlo`).
- `stop_gradient`: the schedulers read stop-gradient copies of the backbone's features: the
  clean-x pass runs under `torch.no_grad` and the z_t hidden states are detached before h_ψ,
  so the backbone is trained by the NELBO through its logits only.
- `shared_time`: the K draws of a sequence share one t (the baseline then removes only the
  mask noise, not the variation of the loss with t).
- `scheduler`: g_φ and h_ψ are one linear readout (`linear`, the default: it trained better
  on the lookup-chain task) or the paper's small transformer block + MLP head (`block`);
  see `oemdm_lomdm.scheduler`.
- `position_bias`: a learned per-position bias on both schedulers' logits (off by default),
  so that a positional order is reachable whatever the features carry (with RoPE the
  backbone's hidden states carry no absolute position).
- `times`: training times importance-sampled (the default: it trained better on the
  lookup-chain task) or uniform; `t_min`: train on t ∈ [t_min, 1] (reference codes use
  1e-3; biased, see docs/math.md).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from oemdm_core import ConfigError
from oemdm_core.interfaces import Backbone, BaseSchedule, DenoiserOutput
from oemdm_lomdm.power_schedule import PowerSchedule
from oemdm_lomdm.scheduler import scheduler_network
from oemdm_lomdm.training_options import LearnedOrder, LearnedOrderOptions


def norm_sig(v: Tensor) -> Tensor:
    """NormSig(v)_i = σ(v_i) − mean_j σ(v_j) over the last dim: `[B, L]` → `[B, L]` in (−1, 1)."""
    s = torch.sigmoid(v)
    return s - s.mean(-1, keepdim=True)


Spread = Literal["linear", "log"]
SPREADS: tuple[str, ...] = get_args(Spread)


def spread_exponents(logits: Tensor, c1: float, c2: float, spread: str = "linear") -> Tensor:
    """Exponents w `[B, L]` from scheduler logits `[B, L]`.

    linear (the paper's): w = c1 + c2·NormSig(v), arithmetic mean c1, w ∈ (c1 − c2, c1 + c2).
    With the mean pinned, the exponents of a graded order cannot spread far: a positional
    order's sampled order correlation stays below ≈ 0.38 for any c1 > c2 (docs/research.md).
    log: w = c1·r^{NormSig(v)}, r = (c1 + c2)/(c1 − c2): geometric mean c1 (a scale of w is
    only a time warp, so fixing the geometric mean fixes the same gauge), and log w spreads
    evenly, so a geometric order (w_max / w_min up to r) is reachable; w ∈ (c1/r, c1·r),
    so the smallest exponent can fall below the 0.05 for which importance-sampled times keep
    a finite variance (only when one position's σ is near 0 and every other's near 1).
    """
    if spread == "log":
        return c1 * torch.pow((c1 + c2) / (c1 - c2), norm_sig(logits))
    return c1 + c2 * norm_sig(logits)


class SmallEncoder(nn.Module):
    """A small bidirectional transformer over token ids (mask included): `[B, L]` → `[B, L, D]`."""

    def __init__(self, num_ids: int, max_length: int, width: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_ids, width)
        self.position = nn.Embedding(max_length, width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                nhead=2,
                dim_feedforward=4 * width,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.embed(tokens) + self.position(positions)[None]  # [B, L, D]
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class LoMDM(LearnedOrder):
    """Learned order α^i(x, t) = 1 − t^{w^i(x)} with a matching learned reverse scheduler."""

    name = "lomdm"
    has_reverse_scheduler = True

    class Options(LearnedOrderOptions):
        c1: float = Field(default=0.7, gt=0, description="Centre of the exponents w (c1 > c2).")
        c2: float = Field(
            default=0.65,
            ge=0,
            validate_default=True,  # so that c1 below the default c2 is caught
            description="Spread of the exponents: w ∈ (c1 − c2, c1 + c2).",
        )
        features: Literal["backbone", "encoder"] = Field(
            default="backbone",
            description="Features f: the shared backbone's hidden states or a small encoder.",
        )
        encoder_width: int = Field(
            default=64, ge=8, multiple_of=2, description="Width of the small encoder."
        )
        encoder_layers: int = Field(default=1, ge=1, description="Layers of the small encoder.")
        scheduler: Literal["linear", "block"] = Field(
            default="linear",  # measured: better than block on the lookup-chain task, 2 seeds
            description="Scheduler networks g_φ, h_ψ: one linear readout, or a transformer "
            "block + MLP head (the paper's).",
        )
        spread: Spread = Field(
            default="linear",
            description="How logits become exponents: linear, c1 + c2·NormSig (the paper's), "
            "or log, c1·((c1+c2)/(c1−c2))^NormSig (graded orders reachable).",
        )
        position_bias: bool = Field(
            default=False,
            description="Add a learned per-position bias to each scheduler's logits, so a "
            "positional order (e.g. left to right) is one vector away for any features.",
        )
        scheduler_width: int = Field(
            default=64, ge=8, multiple_of=2, description="Width of the block scheduler."
        )
        times: Literal["uniform", "importance"] = Field(
            default="importance",  # measured: better than uniform on the lookup-chain task
            description="Training times (the generic estimator's times=auto): "
            "importance-sampled with weights 1/q(t), or uniform; both unbiased.",
        )

        @field_validator("c2")
        @classmethod
        def _c2_below_c1(cls, c2: float, info: ValidationInfo) -> float:
            c1 = info.data.get("c1")
            if c1 is not None and not c1 > c2:
                raise ValueError(
                    f"c2 must be smaller than c1 (got c1={c1}, c2={c2}); c1 > c2 >= 0 keeps w > 0"
                )
            return c2

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.encoder: SmallEncoder | None = None
        self.forward_head: nn.Module | None = None
        self.reverse_head: nn.Module | None = None
        self.forward_bias: nn.Parameter | None = None
        self.reverse_bias: nn.Parameter | None = None

    @property
    def needs_features(self) -> bool:
        """With its own encoder the order reads no backbone hidden states (and costs no extra
        backbone pass): the encoder runs on x (forward) and on z_t (reverse)."""
        return self.options.features == "backbone"

    @property
    def times(self) -> str:
        return self.options.times

    @property
    def feature_gradient(self) -> bool:
        return not self.options.stop_gradient

    def bind(self, backbone: Backbone) -> None:
        """Create the scheduler networks g_φ, h_ψ (and the encoder) sized for `backbone`."""
        if self.forward_head is not None:
            return
        o = self.options
        if o.features == "backbone" and not backbone.exposes_hidden:
            raise ConfigError(
                f"order.features='backbone': the {o.scheduler} schedulers read the backbone's "
                f"hidden states, but backbone '{backbone.name}' exposes none; use "
                "features='encoder' (a small encoder of the order's own)"
            )
        if o.features == "encoder":
            self.encoder = SmallEncoder(
                backbone.vocab_size + 1, backbone.max_length, o.encoder_width, o.encoder_layers
            )
            width = o.encoder_width
        else:
            width = backbone.hidden_size
        self.forward_head, self.reverse_head = (
            scheduler_network(o.scheduler, width, o.scheduler_width, backbone.max_length)
            for _ in range(2)
        )
        if o.position_bias:
            self.forward_bias = nn.Parameter(torch.zeros(backbone.max_length))
            self.reverse_bias = nn.Parameter(torch.zeros(backbone.max_length))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """g_φ (with the encoder, which both schedulers read) and h_ψ."""
        forward = list(self.forward_head.parameters()) if self.forward_head is not None else []
        if self.encoder is not None:
            forward += list(self.encoder.parameters())
        reverse = list(self.reverse_head.parameters()) if self.reverse_head is not None else []
        if self.forward_bias is not None and self.reverse_bias is not None:
            forward.append(self.forward_bias)
            reverse.append(self.reverse_bias)
        return {"forward_scheduler": forward, "reverse_scheduler": reverse}

    def _heads(self) -> tuple[nn.Module, nn.Module]:
        """(g_φ, h_ψ), made by `bind`."""
        if self.forward_head is None or self.reverse_head is None:
            raise RuntimeError(
                "lomdm order is not bound to a backbone; build it inside OeMDM (which calls bind)"
            )
        return self.forward_head, self.reverse_head

    def _features(self, tokens: Tensor, given: Tensor | None, what: str) -> Tensor:
        self._heads()
        if self.encoder is not None:
            return self.encoder(tokens)
        if given is None:
            raise ValueError(
                f"lomdm with features='backbone' needs the backbone hidden states of {what} "
                "([B, L, D]); call it through OeMDM, which supplies them"
            )
        return given.detach() if self.options.stop_gradient else given

    def exponents(self, head: nn.Module, features: Tensor, bias: Tensor | None = None) -> Tensor:
        """c1 + c2 · NormSig(head(features) + bias): `[B, L]` from `features: [B, L, D]`
        (`bias`: the per-position bias `[max_length]` of `position_bias`, or None)."""
        logits = head(features).squeeze(-1)  # [B, L]
        if bias is not None:
            logits = logits + bias[: logits.shape[1]]
        o = self.options
        return spread_exponents(logits.float(), o.c1, o.c2, o.spread)

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PowerSchedule:
        """α_F^i(x, t) = 1 − t^{w^i(x)}; `features`: backbone hidden states of x, `[B, L, D]`."""
        f = self._features(x, features, "the clean x")
        return PowerSchedule(self.exponents(self._heads()[0], f, self.forward_bias))

    def generation_weights(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> Tensor:
        """The forward exponents w `[B, L]` (Plackett–Luce weights of the generation order)."""
        return self.forward_schedule(x, base, features).w

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, base: BaseSchedule, out: DenoiserOutput | None = None
    ) -> PowerSchedule:
        """α_R^i(z_t, s) = 1 − s^{ŵ^i(z_t)}; `out.hidden`: backbone hidden states at z_t.

        With `reverse_scheduler_enabled = False` (the paper's c2 = 0 sampling ablation),
        ŵ ≡ c1: MDM's random order with the same denoiser."""
        if not self.reverse_scheduler_enabled:
            return PowerSchedule(torch.full(z_t.shape, self.options.c1, device=z_t.device))
        f = self._features(z_t, out.hidden if out is not None else None, "z_t")
        return PowerSchedule(self.exponents(self._heads()[1], f, self.reverse_bias))
