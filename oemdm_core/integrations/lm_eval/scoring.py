"""Log-likelihood of a continuation given a context, for one window of the model's length L.

A window is a row of L positions: the context ids first (kept clean: "given"), then the
continuation ids ("scored"), then positions that stay masked throughout (nothing is known
about them and nothing is scored). Two computations, both in nats:

- `exact_order_logprob`: the exact log-likelihood of the sampler that un-masks the
  continuation greedily by a deterministic `Scorer` (the DUEL formula of
  `oemdm_core.runtime.evaluation.exact_order`, started from the context instead of the
  all-mask state, and stopped when the continuation is filled). The time of step j is
  t_j = (m_j − k_j/2)/L with m_j the masked positions (the trailing ones included), as in the
  unconditional version; for the `ar` order the candidates are then exactly the next
  position, so the value is the AR log-likelihood log p(cont | ctx) whatever the scorer.
  `teacher_forced_logprob` is the same number in one causal pass (left-to-right order on a
  causal, time-free backbone; see the `teacher-forcing` estimator).
- `nelbo_logprob`: −NELBO of the continuation, a lower bound on the log-likelihood of the
  model's reverse process run on the continuation positions only (context clean, trailing
  positions masked): the integrand of `oemdm_core.nelbo.terms` summed over the masked
  continuation positions, integrated over t by the deterministic quadrature of
  `oemdm_core.runtime.evaluation.likelihood` (importance grid, fixed seeds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from oemdm_core.interfaces.draws import uniform
from oemdm_core.interfaces.sampler import Scorer
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.nelbo import terms as N
from oemdm_core.runtime.evaluation.exact_order import _top_k, check_scorer
from oemdm_core.runtime.evaluation.likelihood import evaluation_times

Window = tuple[list[int], list[int]]  # (context ids, continuation ids), together ≤ L


@dataclass
class WindowBatch:
    """Windows as rows of L positions.

    tokens: `[B, L]` ids: context, continuation, then filler id 0 (never read as data: those
        positions are masked in every state; only a learned forward scheduler's clean pass
        sees the filler).
    given: `[B, L]` bool, the context positions. scored: `[B, L]` bool, the continuation.
    """

    tokens: Tensor
    given: Tensor
    scored: Tensor


@dataclass
class Continuation:
    """logprob: `[B]` float64 nats (exact, or −NELBO: a lower bound). greedy: `[B]` bool,
    whether greedy decoding along the same order would produce the continuation."""

    logprob: Tensor
    greedy: Tensor


def scoring_windows(ids: list[int], start: int, length: int) -> list[Window]:
    """Windows that score `ids[start:]` given `ids[:start]`, each token exactly once: chunks
    of at most `length` tokens, each after as much of the preceding text as still fits
    (a short continuation: one window with the left-truncated context; a long document:
    L-token chunks, the last one after a full-sized context)."""
    if not 0 <= start <= len(ids):
        raise ValueError(f"start must lie in [0, {len(ids)}], got {start}")
    windows = []
    while start < len(ids):
        end = min(start + length, len(ids))
        windows.append((ids[max(0, end - length) : start], ids[start:end]))
        start = end
    return windows


def window_batch(windows: list[Window], length: int, device: torch.device) -> WindowBatch:
    """Rows `[B, L]` for `windows` (each context + continuation of at most `length` ids)."""
    tokens = torch.zeros(len(windows), length, dtype=torch.long)
    given = torch.zeros(len(windows), length, dtype=torch.bool)
    scored = torch.zeros_like(given)
    for row, (context, continuation) in enumerate(windows):
        n, m = len(context), len(continuation)
        if n + m > length:
            raise ValueError(f"a window holds at most {length} ids, got {n} + {m}")
        tokens[row, : n + m] = torch.tensor(context + continuation, dtype=torch.long)
        given[row, :n] = True
        scored[row, n : n + m] = True
    return WindowBatch(tokens.to(device), given.to(device), scored.to(device))


@torch.no_grad()
def exact_order_logprob(
    model: OeMDM, batch: WindowBatch, scorer: Scorer, per_step: int = 1
) -> Continuation:
    """log p(continuation | context) under the greedy order of `scorer` (see module), one
    denoiser call per step (≤ the longest continuation's length)."""
    check_scorer(scorer)
    x, mask = batch.tokens, model.mask_id
    length = x.shape[1]
    z = torch.where(batch.given, x, mask)
    todo = batch.scored.clone()
    logprob = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    greedy = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    while bool(todo.any()):
        chosen = todo.sum(-1).clamp(max=per_step)
        t = (((z == mask).sum(-1) - chosen / 2) / length).clamp(0.0, 1.0).float()
        out = model.denoise(z, t)
        velocity = model.reverse_schedule(z, t, out).velocity(t)
        eligible = todo & (velocity > 0)
        eligible = torch.where(eligible.any(-1, keepdim=True), eligible, todo)
        counts = torch.minimum(chosen, eligible.sum(-1))
        reveal = _top_k(scorer.score(out.logits, velocity, None), eligible, counts)
        logp = torch.log_softmax(out.logits.double(), dim=-1).gather(-1, x[..., None])[..., 0]
        logprob += torch.where(reveal, logp, 0.0).sum(-1)
        greedy &= ~(reveal & (out.logits.argmax(-1) != x)).any(-1)
        z = torch.where(reveal, x, z)
        todo &= ~reveal
    return Continuation(logprob, greedy)


@torch.no_grad()
def teacher_forced_logprob(model: OeMDM, batch: WindowBatch) -> Continuation:
    """`exact_order_logprob` for the left-to-right order on a causal backbone that ignores t:
    the logits at i read only ids < i (context and continuation, never the filler after
    them), so one pass gives every step's logits."""
    x = batch.tokens
    logits = model.backbone(x, None).logits  # causal: [B, L, V], position i given x_<i
    logp = torch.log_softmax(logits.double(), dim=-1).gather(-1, x[..., None])[..., 0]
    logprob = torch.where(batch.scored, logp, 0.0).sum(-1)
    greedy = ~(batch.scored & (logits.argmax(-1) != x)).any(-1)
    return Continuation(logprob, greedy)


@torch.no_grad()
def nelbo_logprob(
    model: OeMDM, batch: WindowBatch, num_times: int = 16, seed: int = 0
) -> Continuation:
    """−NELBO of the continuation given the context (see module): `num_times` denoiser calls.

    Grid point j draws the masks of the continuation from one generator seeded with
    `seed · 1000003 + j` and shared by all rows, so a window's value does not depend on the
    batch it is in, and the choices of one question are compared under the same masks.
    For a window without context that fills all L positions this is exactly the
    deterministic NELBO of `oemdm eval` for a batch of that one sequence. `greedy` is all
    False: a random-order sampler has no greedy decoding path to compare with.
    """
    if num_times < 1:
        raise ValueError(f"num_times must be >= 1, got {num_times}")
    x, mask = batch.tokens, model.mask_id
    rows, length = x.shape
    forward = model.forward_schedule(x)
    total = torch.zeros(rows, dtype=torch.float64, device=x.device)
    for j in range(num_times):
        generator = torch.Generator(device=x.device).manual_seed(seed * 1_000_003 + j)
        t, weight = evaluation_times(rows, j, num_times, "deterministic")
        t = t.to(x.device)
        u = uniform((length,), generator, x.device).expand(rows, length)
        masked = batch.scored & (u >= forward.alpha(t).detach().double())
        z = torch.where(batch.given | (batch.scored & ~masked), x, mask)
        out = model.denoise(z, t)
        reverse = model.reverse_schedule(z, t, out)
        ce = N.cross_entropy(out.logits, x)
        reconstruction, matching = N.continuous_integrand(ce, masked, forward, reverse, t)
        total += (reconstruction + matching).double() * weight.to(x.device)
    return Continuation(-total / num_times, torch.zeros(rows, dtype=torch.bool, device=x.device))
