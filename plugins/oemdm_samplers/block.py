"""Semi-autoregressive block sampling (BD3-LM): blocks left to right, a pluggable inner rule
inside each block, finished blocks read from a KV cache, optional stop at end-of-text."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import Tensor
from typing_extensions import Self

from oemdm_core import ComponentRegistry, Sampler, SampleResult, resolve_registry
from oemdm_core.interfaces import (
    Backbone,
    DenoiserOutput,
    DiffusionModel,
    DrawOptions,
    PositionSchedule,
    Segment,
    SegmentSampler,
    SlicedSchedule,
    StepCallback,
    StepInfo,
    block_order_size,
    initial_state,
)

FORWARDED = ("steps", "temperature", "top_p")  # block options an inner rule built by name gets


class CachedBlockDenoiser:
    """Denoiser for the block `[lo, hi)` reading finished blocks from a KV cache.

    Finished blocks are appended lazily: the first call for a block also commits the
    pending clean blocks before it, in the same network call."""

    def __init__(self, backbone: Backbone, batch: int, length: int) -> None:
        self.backbone = backbone
        self.cache = backbone.new_cache(batch, capacity=length)
        self.pending: Tensor | None = None

    def finish(self, block: Tensor) -> None:
        """Queue the clean tokens `[N, B]` of the block just finished for the cache."""
        self.pending = block if self.pending is None else torch.cat([self.pending, block], 1)

    def __call__(self, state: Tensor, t: Tensor) -> DenoiserOutput:
        if self.pending is None:
            return self.backbone(state, t, cache=self.cache, commit=0)
        count = self.pending.shape[1]
        out = self.backbone(torch.cat([self.pending, state], 1), t, cache=self.cache, commit=count)
        self.pending = None
        hidden = None if out.hidden is None else out.hidden[:, count:]
        return type(out)(logits=out.logits[:, count:], hidden=hidden)


def sliced(
    schedule: PositionSchedule, lo: int, hi: int, state: Tensor, t: Tensor, out: DenoiserOutput
) -> PositionSchedule:
    """Columns `[lo, hi)` of the fixed reverse `schedule`, whatever the state (a block's
    `Segment.schedule`)."""
    return SlicedSchedule(schedule, lo, hi)


def block_reporter(
    callback: StepCallback, z: Tensor, lo: int, hi: int, offset: int
) -> StepCallback:
    """The step callback of block `[lo, hi)`'s segment: hands `callback` the step `offset`
    later, with the state and revealed positions over the whole sequence (`[N, L]`, the
    other blocks as `z` holds them when the step ends)."""

    def report(info: StepInfo) -> None:
        state = z.clone()
        state[:, lo:hi] = info.state
        revealed = torch.zeros_like(state, dtype=torch.bool)
        revealed[:, lo:hi] = info.revealed
        callback(StepInfo(info.index + offset, info.t, info.s, state, revealed))

    return report


class BlockSampler(Sampler):
    """Blocks b = 0, 1, … of the order's block size B', each filled by the inner rule while
    reverse time runs through the block's window [(nb−1−b)/nb, (nb−b)/nb].

    Serves orders with a block structure (`block`, `ar`). With `cache` the backbone must
    offer a KV cache (causal, or block-causal in blocks of B'): each call reads
    only the current block, the finished ones come from the cache, and the logits equal the
    uncached ones. Without it each call recomputes the prefix up to the block (the whole
    sequence for a bidirectional backbone). A time-conditioned backbone keeps, in the cache,
    the t at which a block was committed, so cached sampling is exact only for backbones
    that ignore t.
    """

    name = "block"
    has_cache = True
    reports_steps = True

    class Options(DrawOptions):
        steps: int = Field(
            default=8, ge=1, description="Inner steps per block (if the inner rule takes steps)."
        )
        inner: str = Field(
            default="ancestral",
            description="Registered SegmentSampler filling each block (e.g. ancestral).",
        )
        cache: bool = Field(default=True, description="Read finished blocks from a KV cache.")
        eos_id: int | None = Field(
            default=None, ge=0, description="End-of-text id: stop a sequence after it."
        )

    options: Options

    def __init__(self, registry: ComponentRegistry | None = None, **options: Any) -> None:
        """`inner`: the registry name of a `SegmentSampler` (None: the option's default),
        built from `registry` with this sampler's `steps`, `temperature` and `top_p` (those of
        them its options have); or a built one, used as it is: then those three options are
        its own (setting them here as well is an error), and `get_options()` records its name
        and them (its other options are not recorded)."""
        inner: str | SegmentSampler | None = options.pop("inner", None)
        if isinstance(inner, SegmentSampler):
            given = sorted(set(options) & set(FORWARDED))
            if given:
                raise ValueError(
                    f"sampler 'block': {given[0]} is an option of the inner rule you built "
                    f"('{inner.name}'); set it there, or pass the inner rule by name"
                )
            own = {k: v for k, v in inner.get_options().items() if k in FORWARDED}
            super().__init__(inner=inner.name, **own, **options)
            self.rule = inner
            return
        if inner is not None and not isinstance(inner, str):
            raise ValueError(
                f"the inner rule of 'block' must be a SegmentSampler (one that fills any "
                f"segment, e.g. 'ancestral' or 'first-hitting'), got {inner!r}"
            )
        super().__init__(**options, **({} if inner is None else {"inner": inner}))
        self.rule = self._build_inner(self.options.inner, resolve_registry(registry))

    @classmethod
    def from_options(cls, options: BaseModel, registry: ComponentRegistry | None = None) -> Self:
        return cls(registry=registry, **dict(options))

    def _build_inner(self, inner: str, registry: ComponentRegistry) -> SegmentSampler:
        if inner == self.name:
            raise ValueError("the block sampler cannot be its own inner rule")
        cls = registry.get("sampler", inner)
        if not issubclass(cls, SegmentSampler):
            raise ValueError(
                f"sampler '{inner}' cannot be an inner rule of 'block': it is no "
                "SegmentSampler (e.g. use 'ancestral' or 'first-hitting')"
            )
        fields = cls.Options.model_fields
        options = {k: v for k, v in self.forwarded_options().items() if k in fields}
        return cls.from_options(
            cls.validate_options(prefix="sampler[block].inner", **options), registry=registry
        )

    def forwarded_options(self) -> dict[str, object]:
        """The options handed to an inner rule built by name."""
        return self.options.model_dump(include=set(FORWARDED))

    def _check(self, model: DiffusionModel, length: int) -> int:
        order, backbone = model.order, model.backbone
        size = block_order_size(order)
        if size is None:
            raise ValueError(
                f"sampler 'block' cannot serve order '{order.name}': it has no left-to-right "
                "block structure (use order 'block' or 'ar')"
            )
        if length % size:
            raise ValueError(
                f"length {length} is not a multiple of the block size {size} of order "
                f"'{order.name}'; use a length divisible by {size}"
            )
        attention = backbone.attention
        # a block_causal backbone attends in the order's blocks (OeMDM checks they agree)
        if self.options.cache and not (
            backbone.supports_kv_cache and attention in ("causal", "block_causal")
        ):
            raise ValueError(
                f"sampler 'block' with cache=True needs a backbone with a KV cache and causal "
                f"or block-causal attention; backbone '{backbone.name}' has {attention!r} "
                "attention; pass cache=False"
            )
        return size

    def check_model(self, model: DiffusionModel, length: int | None = None) -> None:
        self._check(model, model.length if length is None else length)

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
        length = model.length if length is None else length
        size = self._check(model, length)
        z, keep = initial_state(model, num_samples, length, fixed)
        backbone, mask_id, nb = model.backbone, model.mask_id, length // size
        schedule = model.reverse_schedule(z, torch.ones(num_samples, device=z.device))
        cached = CachedBlockDenoiser(backbone, num_samples, length) if self.options.cache else None
        order = torch.full_like(z, -1)
        done = torch.zeros(num_samples, dtype=torch.bool, device=z.device)
        lengths = torch.full((num_samples,), length, dtype=torch.long, device=z.device)
        nfe, steps = 0, 0
        for b in range(nb):
            lo, hi = b * size, (b + 1) * size
            if bool((z[:, lo:hi] != mask_id).all()):
                if cached is not None:
                    cached.finish(z[:, lo:hi])
                continue
            segment = Segment(
                tokens=z[:, lo:hi],
                mask_id=mask_id,
                denoise=cached if cached is not None else self._uncached(model, z, lo, hi),
                schedule=functools.partial(sliced, schedule, lo, hi),
                t_start=(nb - b) / nb,
                t_end=(nb - 1 - b) / nb,
                uses_time=backbone.uses_time,
                on_step=None if callback is None else block_reporter(callback, z, lo, hi, steps),
            )
            result = self.rule.fill_segment(segment, generator)
            z[:, lo:hi] = result.tokens
            order[:, lo:hi] = torch.where(result.order >= 0, result.order + steps, -1)
            nfe, steps = nfe + result.nfe, steps + result.steps
            if self.options.eos_id is not None:
                done, lengths = self._stop(z, order, keep, done, lengths, lo, hi)
                if bool(done.all()):
                    break
            if cached is not None:
                cached.finish(z[:, lo:hi])
        return SampleResult(tokens=z, order=order, nfe=nfe, lengths=lengths)

    @staticmethod
    def _uncached(
        model: DiffusionModel, z: Tensor, lo: int, hi: int
    ) -> Callable[[Tensor, Tensor], DenoiserOutput]:
        """Denoiser of block [lo, hi) recomputing the prefix (whole sequence if bidirectional)."""
        backbone = model.backbone
        end = z.shape[1] if backbone.attention == "bidirectional" else hi

        def denoise(state: Tensor, t: Tensor) -> DenoiserOutput:
            full = torch.cat([z[:, :lo], state, z[:, hi:end]], dim=1)
            out = backbone(full, t)
            hidden = None if out.hidden is None else out.hidden[:, lo:hi]
            return type(out)(logits=out.logits[:, lo:hi], hidden=hidden)

        return denoise

    def _stop(
        self,
        z: Tensor,
        order: Tensor,
        keep: Tensor,
        done: Tensor,
        lengths: Tensor,
        lo: int,
        hi: int,
    ) -> tuple[Tensor, Tensor]:
        """Mark sequences whose block [lo, hi) generated eos_id; pad everything after it."""
        eos_id = self.options.eos_id
        if eos_id is None:  # called only with an eos_id
            return done, lengths
        hit = (z[:, lo:hi] == eos_id) & ~keep[:, lo:hi]  # [N, B]
        first = torch.where(hit.any(1), hit.float().argmax(1) + lo, z.shape[1])
        new = ~done & hit.any(1)
        lengths = torch.where(new, first + 1, lengths)
        done = done | new
        after = torch.arange(z.shape[1], device=z.device)[None, :] >= lengths[:, None]
        pad = done[:, None] & after  # [N, L]
        z.masked_fill_(pad, eos_id)
        order.masked_fill_(pad, -1)
        return done, lengths
