"""`OeMDM`: a denoiser, an order and a base schedule composed into one model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from oemdm_core.errors import ConfigError
from oemdm_core.interfaces.backbone import Backbone, DenoiserOutput
from oemdm_core.interfaces.estimator import Estimator, NELBOTerms
from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.position_schedule import PositionSchedule
from oemdm_core.interfaces.requirements import block_size_contradiction
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.model import pretrained
from oemdm_core.model.config import ComponentSpec, ModelConfig
from oemdm_core.nelbo.monte_carlo import MonteCarloEstimator, warn_if_outranked
from oemdm_core.plugin.component import Component
from oemdm_core.plugin.registry import Registry, resolve_registry

__all__ = ["OeMDM"]


class OeMDM(nn.Module):
    """An order-expressive masked diffusion model.

    Args:
        backbone: the denoiser p_θ(x^i | z_t, t); ids in [0, V], id V is the mask.
        order: the generation order (forward and reverse per-position schedules).
        schedule: the base schedule α_b the order is built on.
        estimator: how `nelbo` estimates the bound (default: the generic Monte Carlo one).
        length: the sequence length L the model is meant for (default: backbone.max_length).
    """

    def __init__(
        self,
        backbone: Backbone,
        order: Order,
        schedule: BaseSchedule,
        estimator: Estimator | None = None,
        length: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.order = order
        self.schedule = schedule
        self.estimator = estimator if estimator is not None else MonteCarloEstimator()
        self.length = int(length if length is not None else backbone.max_length)
        if self.length > backbone.max_length:
            raise ValueError(
                f"length {self.length} exceeds the backbone's max_length {backbone.max_length}"
            )
        order.check_length(self.length)
        contradiction = block_size_contradiction(order, backbone)
        if contradiction is not None:
            raise ConfigError(contradiction)
        order.bind(backbone)  # first: an order may explain which of its options reads features
        if order.needs_features and not backbone.exposes_hidden:
            raise ValueError(
                f"order '{order.name}' reads backbone hidden states, but backbone "
                f"'{backbone.name}' exposes none; use a backbone with hidden states (e.g. 'transformer')"
            )
        reason = self.estimator.unsupported_reason(self)
        if reason is not None:
            raise ValueError(f"estimator '{self.estimator.name}' cannot serve this model: {reason}")

    # -- basic facts ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """V, the number of clean tokens."""
        return self.backbone.vocab_size

    @property
    def mask_id(self) -> int:
        """Id of the mask token (= V)."""
        return self.backbone.vocab_size

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def check_tokens(self, tokens: Tensor, allow_mask: bool = False) -> None:
        """Raise `ValueError` unless `tokens` is a `[B, L]` integer tensor of valid ids."""
        if not isinstance(tokens, Tensor):
            raise TypeError(
                f"tokens must be a torch.Tensor of shape [B, L], got {type(tokens).__name__}"
            )
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [B, L], got {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"tokens must be an integer tensor (torch.long), got dtype {tokens.dtype}"
            )
        if tokens.shape[1] > self.backbone.max_length:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds the backbone's max_length {self.backbone.max_length}"
            )
        high = self.vocab_size + (1 if allow_mask else 0)
        if tokens.device.type != "cpu":  # no host sync on accelerators: check asynchronously
            torch._assert_async(
                ((tokens >= 0) & (tokens < high)).all(), f"token ids outside [0, {high})"
            )
        elif tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= high):
            what = (
                f"[0, {self.vocab_size}] (id {self.vocab_size} is the mask)"
                if allow_mask
                else f"[0, {self.vocab_size})"
            )
            raise ValueError(
                f"token ids must lie in {what}; got values in [{int(tokens.min())}, {int(tokens.max())}]"
            )
        self.order.check_length(tokens.shape[1])

    def check_times(self, t: Tensor, batch: int) -> Tensor:
        """Validate times `[B]` in [0, 1]; returns them as a floating tensor."""
        if not isinstance(t, Tensor):
            t = torch.tensor(t, dtype=torch.float32)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape [{batch}], got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"t must be a floating tensor, got dtype {t.dtype}")
        if t.device.type != "cpu":
            torch._assert_async(((t >= 0) & (t <= 1)).all(), "t must lie in [0, 1]")
        elif bool(t.isnan().any()):
            raise ValueError(
                f"t must lie in [0, 1]; got NaN at index {int(t.isnan().nonzero()[0])}"
            )
        elif bool(((t < 0) | (t > 1)).any()):
            raise ValueError(
                f"t must lie in [0, 1]; got values in [{float(t.min())}, {float(t.max())}]"
            )
        return t

    # -- the model -----------------------------------------------------------------------
    def denoise(self, z_t: Tensor, t: Tensor | None = None) -> DenoiserOutput:
        """p_θ(· | z_t, t): `out.logits [B, L, V]`, `out.hidden [B, L, D]`."""
        self.check_tokens(z_t, allow_mask=True)
        if t is not None:
            t = self.check_times(t, z_t.shape[0])
        return self.backbone(z_t, t)

    def clean_features(self, x: Tensor) -> Tensor:
        """Backbone hidden states of the clean sequence, `[B, L, D]` (features f(x)).

        For an order with `feature_gradient = False` (stop-gradient schedulers) the pass runs
        under `torch.no_grad`: a forward pass only, and no gradient reaches the backbone."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.order.feature_gradient):
            out = self.backbone(x, torch.zeros(x.shape[0], device=x.device))
        if out.hidden is None:
            raise ValueError(f"backbone '{self.backbone.name}' exposes no hidden states")
        return out.hidden

    def generation_weights(self, x: Tensor) -> Tensor | None:
        """The order's Plackett–Luce weights `[B, L]` on clean `x: [B, L]` (higher = generated
        earlier), or None when the order has none (see `Order.generation_weights`)."""
        self.check_tokens(x)
        features = self.clean_features(x) if self.order.needs_features else None
        return self.order.generation_weights(x, self.schedule, features)

    def forward_schedule(self, x: Tensor) -> PositionSchedule:
        """Forward schedule α_F(x, ·) of the clean batch `x: [B, L]`."""
        self.check_tokens(x)
        features = self.clean_features(x) if self.order.needs_features else None
        return self.order.forward_schedule(x, self.schedule, features)

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, out: DenoiserOutput | None = None
    ) -> PositionSchedule:
        """Reverse schedule α_R(z_t, ·) at state `z_t: [B, L]` and time `t: [B]`.

        `out` is the denoiser output at (z_t, t); computed if needed and not given.
        """
        if out is None and (self.order.needs_features or self.order.needs_logits):
            out = self.denoise(z_t, t)
        return self.order.reverse_schedule(z_t, t, self.schedule, out)

    def nelbo(
        self,
        x: Tensor,
        t: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> NELBOTerms:
        """Single-draw unbiased estimate of the NELBO of `x: [B, L]`, nats per sequence.

        t: `[B]` times to use (default: low-discrepancy draws). steps: estimate the
        discrete-time bound L_T with T = steps instead of the continuous one.
        """
        return self.estimator.nelbo(self, x, t=t, steps=steps, generator=generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> NELBOTerms:
        return self.nelbo(x, generator=generator)

    # -- configs and checkpoints -------------------------------------------------------
    @classmethod
    def from_config(
        cls, cfg: ModelConfig | dict[str, Any], registry: Registry | None = None
    ) -> OeMDM:
        """Build from a `ModelConfig` or an equivalent dict; see DESIGN section 5."""
        reg = resolve_registry(registry)
        cfg = ModelConfig.parse(cfg)

        def build(kind: str, spec: ComponentSpec, **extra: Any) -> Any:
            component = reg.get(kind, spec.name)
            clash = set(extra) & set(spec.options)
            if clash:
                raise ConfigError(
                    f"{kind}.{sorted(clash)[0]}: set at the top level of the model config; remove it from '{kind}'"
                )
            undeclared = sorted(set(extra) - set(component.Options.model_fields))
            if undeclared:
                raise ConfigError(
                    f"{kind}[{spec.name}]: its Options do not declare {', '.join(undeclared)}; "
                    f"the model passes {', '.join(sorted(extra))} to every {kind} (from the "
                    f"config's vocab_size and length): add them as fields"
                )
            options = component.validate_options(prefix=kind, **spec.options, **extra)
            return component.from_options(options, registry=reg)

        backbone = build("backbone", cfg.backbone, vocab_size=cfg.vocab_size, max_length=cfg.length)
        order = build("order", cfg.order)
        schedule = build("schedule", cfg.schedule)
        model = cls(backbone, order, schedule, length=cfg.length)
        if cfg.estimator.name == "auto":
            if cfg.estimator.options:
                raise ConfigError("estimator: 'auto' takes no options")
            model.estimator = cls._auto_estimator(model, reg)
        else:
            estimator = build("estimator", cfg.estimator)
            reason = estimator.unsupported_reason(model)
            if reason is not None:
                raise ConfigError(f"estimator '{estimator.name}' cannot serve this model: {reason}")
            model.estimator, best = estimator, cls._auto_estimator(model, reg)
            warn_if_outranked(estimator, best, model.order.name)
        return model

    @staticmethod
    def _auto_estimator(model: OeMDM, reg: Registry) -> Estimator:
        candidates = []
        for entry in reg.entries("estimator"):
            estimator = entry.cls.from_options(entry.cls.validate_options(), registry=reg)
            if estimator.unsupported_reason(model) is None:
                candidates.append((entry.cls.auto_priority, entry.name, estimator))
        if not candidates:
            return MonteCarloEstimator()
        return max(candidates, key=lambda c: (c[0], c[1]))[2]

    def components(self) -> dict[str, Component]:
        """The components by kind: backbone, order, schedule, estimator."""
        return {
            "backbone": self.backbone,
            "order": self.order,
            "schedule": self.schedule,
            "estimator": self.estimator,
        }

    def config(self) -> dict[str, Any]:
        """The model config as a plain dict (round-trips through `from_config`)."""

        def spec(component: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
            opts = {k: v for k, v in component.get_options().items() if k not in drop}
            return {"name": component.name, **opts}

        return {
            "vocab_size": self.vocab_size,
            "length": self.length,
            "backbone": spec(self.backbone, ("vocab_size", "max_length")),
            "order": spec(self.order),
            "schedule": spec(self.schedule),
            "estimator": spec(self.estimator),
        }

    def save_pretrained(
        self, path: str | os.PathLike, registry: Registry | None = None, overwrite: bool = False
    ) -> Path:
        """Write `config.json` (components, options, supplying distributions) and
        `model.safetensors` into directory `path` (new or empty; a saved model only with
        `overwrite=True`; anything else is refused), see `oemdm_core.model.pretrained`."""
        return pretrained.save(self, self.config(), self.components(), path, registry, overwrite)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, registry: Registry | None = None, map_location: str = "cpu"
    ) -> OeMDM:
        """Load a model written by `save_pretrained`."""
        return pretrained.load(cls.from_config, path, registry, map_location)
