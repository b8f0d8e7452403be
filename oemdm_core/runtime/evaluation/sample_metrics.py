"""Quality metrics of generated samples: generative perplexity under a judge model, unigram
entropy and repetition rate.

All functions take tokens `[N, L]` and optional `lengths: [N]` (only the first `lengths[n]`
tokens of row n count, e.g. for samples stopped at an end-of-text token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from oemdm_core.interfaces.requirements import left_to_right_problems
from oemdm_core.model.oemdm import OeMDM


def _valid(tokens: Tensor, lengths: Tensor | None) -> Tensor:
    """Boolean `[N, L]`: which tokens count."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape [N, L], got {tuple(tokens.shape)}")
    if lengths is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    lengths = torch.as_tensor(lengths, device=tokens.device)
    if lengths.shape != (tokens.shape[0],):
        raise ValueError(f"lengths must have shape [{tokens.shape[0]}], got {tuple(lengths.shape)}")
    if bool(((lengths < 0) | (lengths > tokens.shape[1])).any()):
        raise ValueError(f"lengths must lie in [0, {tokens.shape[1]}]")
    return torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]


@dataclass
class GenerativePerplexity:
    """Negative log-likelihood of samples under a judge model.

    nll: `[N]` nats per sequence, −log p_judge(x) (exact, from the judge's causal logits).
    tokens: `[N]` number of tokens scored per sequence.
    bits_per_token: Σ nll / (Σ tokens · ln 2), pooled over all samples.
    perplexity: exp(Σ nll / Σ tokens), pooled over all samples.
    """

    nll: Tensor
    tokens: Tensor
    bits_per_token: float
    perplexity: float


def check_judge(judge: OeMDM) -> None:
    """Raise `ValueError` unless `judge` is a left-to-right model with a causal backbone."""
    problems = left_to_right_problems(judge.order, judge.backbone)
    if problems:
        raise ValueError(
            "the judge must be an AR model with a causal backbone: " + "; ".join(problems)
        )


@torch.no_grad()
def generative_perplexity(
    tokens: Tensor,
    judge: OeMDM,
    lengths: Tensor | None = None,
    batch_size: int = 16,
) -> GenerativePerplexity:
    """Exact NLL of samples `tokens: [N, L]` under an AR `judge` (order 'ar', causal backbone
    that ignores t): −log p(x) = Σ_i −log p(x^i | x_<i) from one causal pass per batch.

    The judge must share the samples' vocabulary (ids < judge.vocab_size) and have
    max_length ≥ L. Returns per-sequence nats and pooled bits/token and perplexity."""
    check_judge(judge)
    valid = _valid(tokens, lengths)
    if tokens.numel() and int(tokens.max()) >= judge.vocab_size:
        raise ValueError(
            f"sample ids reach {int(tokens.max())}, outside the judge's vocabulary "
            f"[0, {judge.vocab_size})"
        )
    if tokens.shape[1] > judge.backbone.max_length:
        raise ValueError(
            f"samples of length {tokens.shape[1]} exceed the judge's max_length "
            f"{judge.backbone.max_length}"
        )
    device = judge.device
    nll = []
    for start in range(0, tokens.shape[0], batch_size):
        x = tokens[start : start + batch_size].to(device)
        logits = judge.backbone(x, None).logits  # [B, L, V]; logits at i read x_<i
        logp = torch.log_softmax(logits.double(), dim=-1)
        ce = -logp.gather(-1, x[..., None])[..., 0]  # [B, L] nats
        nll.append((ce * valid[start : start + batch_size].to(device)).sum(1).cpu())
    nll_t = torch.cat(nll) if nll else torch.zeros(0, dtype=torch.float64)
    counts = valid.sum(1).cpu()
    total = max(int(counts.sum()), 1)
    mean = float(nll_t.sum()) / total
    return GenerativePerplexity(
        nll=nll_t,
        tokens=counts,
        bits_per_token=mean / math.log(2),
        perplexity=math.exp(mean),
    )


def unigram_entropy(tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Entropy of each sequence's empirical token distribution, in bits: `[N]` float64.

    H_n = −Σ_v p_n(v) log2 p_n(v), p_n(v) = count of v in row n / number of tokens in row n
    (0 for an empty row). Collapsed samples (one token repeated) score 0; L distinct tokens
    score log2 L."""
    valid = _valid(tokens, lengths)
    rows = []
    for row, keep in zip(tokens, valid, strict=True):
        counts = torch.unique(row[keep], return_counts=True)[1].to(torch.float64)
        if counts.numel() == 0:
            rows.append(torch.zeros((), dtype=torch.float64))
            continue
        p = counts / counts.sum()
        rows.append(-(p * torch.log2(p)).sum())
    return torch.stack(rows) if rows else torch.zeros(0, dtype=torch.float64)


def repetition_rate(tokens: Tensor, n: int = 4, lengths: Tensor | None = None) -> Tensor:
    """Fraction of each sequence's n-grams that repeat an n-gram seen earlier in it: `[N]`
    float64 in [0, 1], = 1 − (distinct n-grams / n-grams). Rows with fewer than n tokens
    score 0."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    valid = _valid(tokens, lengths)
    rows = []
    for row, keep in zip(tokens, valid, strict=True):
        row = row[keep]
        if row.numel() < n:
            rows.append(torch.zeros((), dtype=torch.float64))
            continue
        grams = row.unfold(0, n, 1)  # [L − n + 1, n]
        distinct = torch.unique(grams, dim=0).shape[0]
        rows.append(torch.tensor(1.0 - distinct / grams.shape[0], dtype=torch.float64))
    return torch.stack(rows) if rows else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def sample_quality(
    model: OeMDM,
    sampler,
    num_samples: int,
    judge=None,
    length: int | None = None,
    seed: int = 0,
    n: int = 4,
    tokenizer=None,
    decode=None,
) -> dict[str, float]:
    """Draw `num_samples` sequences with `sampler` (seeded) and score them: mean unigram
    entropy (bits), mean repetition rate of n-grams, sampler NFE, and, with a `judge`,
    generative NLL (bits/token) and perplexity. Sequences stopped at an end-of-text token
    (results with `lengths`) are scored up to it.

    judge: an AR `OeMDM` sharing the model's vocabulary (scores the ids), or an
    `oemdm_core.runtime.evaluation.judge.Judge`, which re-encodes the samples' text (needs the model's
    `tokenizer`, and `decode` if ids such as a pad must be dropped first)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    result = sampler.sample(model, num_samples, length=length, generator=generator)
    tokens = result.tokens.cpu()
    lengths = None if result.lengths is None else result.lengths.cpu()
    metrics = {
        "samples": float(num_samples),
        "sample_nfe": float(result.nfe),
        "sample_unigram_entropy_bits": float(unigram_entropy(tokens, lengths).mean()),
        f"sample_repetition_rate_{n}gram": float(repetition_rate(tokens, n, lengths).mean()),
    }
    if isinstance(judge, OeMDM):
        gen = generative_perplexity(tokens, judge, lengths)
        metrics["gen_bits_per_token"] = gen.bits_per_token
        metrics["gen_perplexity"] = gen.perplexity
    elif judge is not None:
        if tokenizer is None:
            raise ValueError("a text judge needs the sampled model's tokenizer")
        score = judge.score_samples(tokens, lengths, tokenizer, decode)
        metrics["gen_bits_per_token"] = score.bits_per_token
        metrics["gen_perplexity"] = score.perplexity
        metrics["gen_judge_tokens"] = float(score.tokens.sum())
    return metrics
