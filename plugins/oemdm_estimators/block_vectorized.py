"""`block-vectorized`: BD3-LM's estimator of the block-order NELBO, all blocks in one pass.

What the generic estimator computes for a block order (block structure B', nb = L / B'
blocks, block b owning the window [lo_b, lo_b + w], w = 1/nb): it draws t ~ U(0, 1]; t falls
in exactly one window b (probability w); there blocks < b are clean, block b is masked with
probability 1 − α^i(t) and blocks > b are fully masked, and only block b has a nonzero
velocity. So

    L(x) = Σ_b w · E_{τ~U(0,1]} E_{z} [ Σ_{i∈b masked} v^i(t_b) · CE^i ],  t_b = lo_b + τ·w,

where CE^i is read from a z_t whose blocks < b are clean. If the backbone's prediction for
block b depends only on blocks ≤ b (block-causal attention with the order's block size),
every block can be scored in ONE pass: draw one τ_b per block, corrupt each block at its own
t_b, and run the input [z_t ; x] (length 2L, RoPE positions [0..L−1, 0..L−1]) with the mask
of `two_stream_mask`: a noisy block attends to itself and to the earlier clean blocks, clean
blocks attend block-causally among themselves. The noisy half's logits for block b are then
exactly those the generic estimator's z_t would give, so

    estimate = Σ_b Σ_{i∈b masked} w · v^i(t_b) · CE^i

is unbiased for the same L(x), with nb draws per sequence instead of one.
Discrete time (T steps, T a multiple of nb, m = T/nb steps per window): one step j_b ~ U{1..m}
per block and m · Σ_{i∈b masked} a_F^i · CE^i, unbiased for L_T(x); for other T a step can
straddle two blocks, so the call falls back to the generic estimator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from oemdm_core import Estimator, MonteCarloEstimator, NELBOTerms, block_windows
from oemdm_core.interfaces import (
    DiffusionModel,
    block_order_size,
    corrupt,
    cross_entropy,
    discrete_times,
    low_discrepancy_times,
)
from oemdm_estimators.teacher_forcing import check_steps


@functools.lru_cache(maxsize=16)
def two_stream_mask(length: int, block_size: int, device: torch.device) -> Tensor:
    """Boolean `[2L, 2L]` attention mask for the input [z_t ; x], True = may attend.

    Queries/keys 0..L−1 are the noisy stream, L..2L−1 the clean one; block(i) = (i mod L) // B'.
    Noisy query in block b: noisy keys of block b and clean keys of blocks < b.
    Clean query in block b: clean keys of blocks ≤ b. Clean queries never see noisy keys.
    Cached, so repeated calls return the same tensor (lets fused kernels cache their layout).
    """
    block = torch.arange(length, device=device) // block_size
    block = torch.cat([block, block])  # [2L]
    noisy = torch.arange(2 * length, device=device) < length  # [2L]
    q_blk, k_blk = block[:, None], block[None, :]
    q_noisy, k_noisy = noisy[:, None], noisy[None, :]
    same_noisy_block = q_noisy & k_noisy & (k_blk == q_blk)
    earlier_clean = q_noisy & ~k_noisy & (k_blk < q_blk)
    clean_causal = ~q_noisy & ~k_noisy & (k_blk <= q_blk)
    return same_noisy_block | earlier_clean | clean_causal


def at_block_times(values: Tensor, batch: int, num_blocks: int, block_size: int) -> Tensor:
    """Pick each position's value at its own block's time.

    values: `[B·nb, L]`, row n·nb + b evaluated at the time of block b of sequence n.
    Returns `[B, L]` with entry (n, i) = values[n·nb + i // B', i].
    """
    length = values.shape[1]
    values = values.view(batch, num_blocks, length)  # [B, nb, L]
    index = (torch.arange(length, device=values.device) // block_size).expand(batch, 1, length)
    return values.gather(1, index).squeeze(1)  # [B, L]


class BlockVectorized(Estimator):
    """One time per block, all blocks in one 2L pass (see the module docstring for the math).

    Serves fixed block orders (`block`, and `ar` as block size 1) with a block-causal backbone
    of the same block size that ignores t and accepts `attn_mask`/`position_ids`. Attention
    uses the dense boolean 2L mask (SDPA); the transformer switches to FlexAttention on CUDA
    (see `oemdm_transformer.flex`), and falls back to the dense mask on CPU.

    Times: per block τ_b ~ U(0, 1], low-discrepancy within each sequence (the nb blocks of a
    sequence are spread evenly over (0, 1], with a random shift). Given `t: [B]`, every block
    of sequence n uses τ_b = t_n (a quadrature over t is then a quadrature over each window).
    `terms.t` reports τ of block 0.
    """

    name = "block-vectorized"
    auto_priority = 10

    def unsupported_reason(self, model: DiffusionModel) -> str | None:
        order, backbone = model.order, model.backbone
        problems = []
        block = block_order_size(order)
        if block is None:
            problems.append(
                f"order '{order.name}' is not a fixed left-to-right block order; "
                "block-vectorized needs e.g. 'block' or 'ar'"
            )
        if backbone.attention != "block_causal":
            problems.append(
                f"backbone '{backbone.name}' has attention {backbone.attention!r}; "
                "block-vectorized needs 'block_causal'"
            )
        if backbone.uses_time:
            problems.append(
                f"backbone '{backbone.name}' is time-conditioned; block-vectorized uses one time "
                "per block and needs a backbone that ignores t"
            )
        if not backbone.accepts_structured_input:
            problems.append(
                f"backbone '{backbone.name}' declares no structured input "
                "(accepts_structured_input: attn_mask/position_ids arguments)"
            )
        return "; ".join(problems) if problems else None

    def nelbo(
        self,
        model: DiffusionModel,
        x: Tensor,
        t: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> NELBOTerms:
        model.check_tokens(x)
        check_steps(steps)
        batch, length = x.shape
        block_size = model.order.block_structure()
        if block_size is None:  # `unsupported_reason` refuses such orders
            raise ValueError(f"order '{model.order.name}' has no block structure")
        num_blocks = length // block_size
        if steps is not None and steps % num_blocks != 0:
            return MonteCarloEstimator().nelbo(model, x, t=t, steps=steps, generator=generator)

        if t is None:
            flat = low_discrepancy_times(batch * num_blocks, generator, x.device)
            tau = flat.view(num_blocks, batch).T  # [B, nb]: each sequence's blocks spread out
        else:
            tau = model.check_times(t, batch)[:, None].expand(batch, num_blocks)
        tau = tau.to(torch.float64)
        width = 1.0 / num_blocks
        lo, hi = (edge[::block_size].to(x.device) for edge in block_windows(length, block_size))

        def to_global(local: Tensor) -> Tensor:  # local time in each block's window → t [B, nb]
            return torch.lerp(lo.expand_as(local), hi.expand_as(local), local)  # exact at 0, 1

        forward = model.order.forward_schedule(x, model.schedule)

        def per_position(
            fn: Callable[..., Tensor], *times: Tensor
        ) -> Tensor:  # times [B, nb] (global) → [B, L]
            flat_times = [tt.reshape(-1) for tt in times]  # [B·nb] each
            return at_block_times(fn(*flat_times), batch, num_blocks, block_size)

        if steps is None:
            t_global = to_global(tau)  # [B, nb]
            alpha = per_position(forward.alpha, t_global)
            weight = width * per_position(forward.velocity, t_global)  # w · v^i(t_b)
        else:
            per_window = steps // num_blocks
            s_local, t_local = discrete_times(tau.reshape(-1), per_window)
            s_global = to_global(s_local.view(batch, num_blocks))
            t_global = to_global(t_local.view(batch, num_blocks))
            alpha = per_position(forward.alpha, t_global)
            weight = per_window * per_position(forward.unmask_probability, s_global, t_global)

        z_t, masked = corrupt(x, alpha, model.mask_id, generator)  # [B, L] each
        mask = two_stream_mask(length, block_size, x.device)  # [2L, 2L]
        positions = torch.arange(length, device=x.device).repeat(2)  # [2L]: [0..L−1, 0..L−1]
        out = model.backbone(
            torch.cat([z_t, x], dim=1), None, attn_mask=mask, position_ids=positions
        )
        ce = cross_entropy(out.logits[:, :length], x)  # [B, L], noisy stream only
        weight = weight.to(ce.dtype)
        reconstruction = torch.where(masked, weight * ce, torch.zeros_like(ce)).sum(-1)
        return NELBOTerms(
            total=reconstruction,
            reconstruction=reconstruction,
            velocity_matching=torch.zeros_like(reconstruction),
            t=tau[:, 0].to(torch.float32),
            num_masked=masked.sum(-1).to(torch.float32),
        )
