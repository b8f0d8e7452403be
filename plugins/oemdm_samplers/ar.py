"""Left-to-right sampling for the `ar` order with a causal backbone and a KV cache."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from oemdm_core import Sampler, SampleResult
from oemdm_core.interfaces import (
    DiffusionModel,
    DrawOptions,
    StepCallback,
    StepInfo,
    initial_state,
    left_to_right_problems,
    sample_tokens,
)


def check_ar_model(model: DiffusionModel, cache: bool) -> None:
    """Raise `ValueError` unless the model has the left-to-right order and a causal backbone
    (with a KV cache when `cache`)."""
    backbone = model.backbone
    problems = left_to_right_problems(model.order, backbone, time_free=False)
    if backbone.attention == "causal" and cache and not backbone.supports_kv_cache:
        problems.append(f"backbone '{backbone.name}' offers no KV cache; pass cache=False")
    if problems:
        raise ValueError("sampler 'ar' cannot serve this model: " + "; ".join(problems))


class ARSampler(Sampler):
    """Generates positions 0, 1, …, L−1 in turn from the causal logits p_θ(x^i | x_<i).

    One network call per generated position: with the cache the call reads one new token
    (runs of fixed positions before it are fed in the same call); without it, the call
    recomputes the whole prefix up to the position. Fixed positions (prefix or infilling
    context) are fed, never sampled. `order` is the call index at which a position was drawn.
    A time-conditioned backbone gets t = (L − i)/L, the top of position i's window.
    """

    name = "ar"
    has_cache = True
    reports_steps = True

    class Options(DrawOptions):
        cache: bool = Field(
            default=True, description="Use the backbone's KV cache (False: recompute prefixes)."
        )

    options: Options

    def check_model(self, model: DiffusionModel, length: int | None = None) -> None:
        check_ar_model(model, self.options.cache)

    @torch.no_grad()
    def sample(
        self,
        model: DiffusionModel,
        num_samples: int,
        length: int | None = None,
        generator: torch.Generator | None = None,
        fixed: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> SampleResult:
        o = self.options
        check_ar_model(model, o.cache)
        length = model.length if length is None else length
        z, keep = initial_state(model, num_samples, length, fixed)
        backbone = model.backbone
        order = torch.full_like(z, -1)
        generated = (~keep).any(0)  # [L]: columns with at least one position to draw
        columns = generated.nonzero().flatten().tolist()
        cache = backbone.new_cache(num_samples, capacity=length) if o.cache else None
        start, nfe = 0, 0
        for column in columns:
            t = torch.full((num_samples,), (length - column) / length, device=z.device)
            if cache is not None:
                # Positions start … column: the fixed run, then a placeholder at `column`.
                logits = backbone(z[:, start : column + 1], t, cache=cache).logits[:, -1]
            else:
                logits = backbone(z[:, : column + 1], t).logits[:, -1]
            nfe += 1
            token = sample_tokens(logits, generator, o.temperature, o.top_p)
            draw = ~keep[:, column]
            z[:, column] = torch.where(draw, token, z[:, column])
            order[:, column] = torch.where(draw, nfe - 1, -1)
            if callback is not None:
                s = torch.full_like(t, (length - column - 1) / length)
                revealed = torch.zeros_like(keep)
                revealed[:, column] = draw
                callback(StepInfo(nfe - 1, t, s, z.clone(), revealed))
            if cache is not None:
                cache.set_last_token(z[:, column])  # keys never read the token at `column`
            start = column + 1
        return SampleResult(tokens=z, order=order, nfe=nfe)
