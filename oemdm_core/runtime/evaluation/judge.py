"""Judges of generative perplexity: models that score samples as *text*.

Samples are decoded to text with the sampled model's tokenizer and re-encoded with the
judge's own tokenizer, so a judge with another vocabulary never reads foreign ids:

- `OeMDMJudge`: an oemdm AR checkpoint (order 'ar', causal backbone that ignores t). If its
  tokenizer is the sampled model's (same name, options and fitted state), the sample ids are
  scored as they are (no round trip through text); otherwise through text.
- `HFJudge`: a Hugging Face causal LM in a local directory (`--judge hf:DIR`, e.g. a saved
  GPT-2), through `transformers` (the optional extra: pip install -e ".[judge]"). Texts are
  scored in chunks of the model's context, each after the tokenizer's BOS token (GPT-2: its
  end-of-text token) so that every token is predicted; without a BOS token the first token of
  each chunk is context only and not counted.

`parse_judge(spec)` checks a spec before any work: `hf:DIR` needs DIR/config.json, model
weights and a tokenizer; anything else is an oemdm checkpoint.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from oemdm_core.errors import ConfigError
from oemdm_core.plugin.registry import Registry

HF_PREFIX = "hf:"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
HF_TOKENIZER = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")


@dataclass
class JudgeScore:
    """NLL of texts under a judge.

    nll: `[N]` float64 nats per text; tokens: `[N]` judge tokens scored per text.
    bits_per_token, perplexity: pooled over all texts (Σ nll / Σ tokens).
    """

    nll: Tensor
    tokens: Tensor
    bits_per_token: float
    perplexity: float


def pooled(nll: Tensor, tokens: Tensor) -> JudgeScore:
    total = max(int(tokens.sum()), 1)
    mean = float(nll.sum()) / total
    return JudgeScore(nll, tokens, mean / math.log(2), math.exp(mean))


class Judge(ABC):
    """Scores texts with its own tokenizer."""

    name: str = ""

    @abstractmethod
    def score_texts(self, texts: list[str]) -> JudgeScore:
        """Exact NLL of every text under the judge."""

    def score_samples(
        self, tokens: Tensor, lengths: Tensor | None, tokenizer, decode=None
    ) -> JudgeScore:
        """Score sample ids `[N, L]` of a model with `tokenizer` (only the first lengths[n]
        ids of row n): decoded to text (`decode`, default tokenizer.decode; e.g. one that
        drops pad ids), then `score_texts`."""
        decode = decode or tokenizer.decode
        return self.score_texts([decode(row) for row in _rows(tokens, lengths)])


def _rows(tokens: Tensor, lengths: Tensor | None) -> list[list[int]]:
    rows = tokens.tolist()
    if lengths is not None:
        rows = [row[: int(n)] for row, n in zip(rows, lengths.tolist(), strict=True)]
    return rows


class OeMDMJudge(Judge):
    """An oemdm AR checkpoint with its tokenizer (see module)."""

    name = "oemdm"

    def __init__(self, model, tokenizer) -> None:
        from oemdm_core.runtime.evaluation.sample_metrics import check_judge

        check_judge(model)
        self.model, self.tokenizer = model, tokenizer

    def _record(self, tokenizer) -> tuple:
        return (tokenizer.name, tokenizer.get_options(), tokenizer.state())

    def score_ids(self, ids: list[list[int]]) -> JudgeScore:
        """NLL of id sequences of the judge's own vocabulary (chunks of its max_length)."""
        from oemdm_core.runtime.evaluation.sample_metrics import generative_perplexity

        width = self.model.backbone.max_length
        if ids and len({len(r) for r in ids}) == 1 and 0 < len(ids[0]) <= width:
            gen = generative_perplexity(torch.tensor(ids, dtype=torch.long), self.model)
            return pooled(gen.nll, gen.tokens)  # equal lengths: one batched pass
        nll = torch.zeros(len(ids), dtype=torch.float64)
        count = torch.zeros(len(ids), dtype=torch.long)
        for n, row in enumerate(ids):
            for start in range(0, len(row), width):
                chunk = torch.tensor([row[start : start + width]], dtype=torch.long)
                gen = generative_perplexity(chunk, self.model)
                nll[n] += gen.nll[0]
                count[n] += chunk.shape[1]
        return pooled(nll, count)

    def score_texts(self, texts: list[str]) -> JudgeScore:
        return self.score_ids([self.tokenizer.encode(t) for t in texts])

    def score_samples(self, tokens, lengths, tokenizer, decode=None) -> JudgeScore:
        if self._record(tokenizer) != self._record(self.tokenizer):
            return super().score_samples(tokens, lengths, tokenizer, decode)  # through text
        return self.score_ids(_rows(tokens, lengths))  # the same ids: no round trip


def check_hf_dir(path: Path, spec: str) -> None:
    """Raise unless `path` holds a causal LM config, weights and a tokenizer."""
    if not path.is_dir():
        raise FileNotFoundError(f"--judge {spec}: no directory {path}")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("a model config (config.json)")
    if not any((path / f).is_file() for f in HF_WEIGHTS):
        missing.append(f"model weights ({' or '.join(HF_WEIGHTS[:2])})")
    if not any((path / f).is_file() for f in HF_TOKENIZER):
        missing.append("a tokenizer (tokenizer.json, or vocab.json + merges.txt)")
    if missing:
        raise ConfigError(
            f"--judge {spec}: {path} lacks {', '.join(missing)}; a judge directory is what "
            "model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR) write"
        )


class HFJudge(Judge):
    """A local Hugging Face causal LM and its tokenizer (see module)."""

    name = "hf"

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 8) -> None:
        path = Path(path)
        check_hf_dir(path, f"{HF_PREFIX}{path}")
        try:
            import transformers
        except ImportError:
            raise ImportError(
                "--judge hf:DIR needs the `transformers` package: pip install -e '.[judge]'"
            ) from None
        self.path, self.device, self.batch_size = path, device, batch_size
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True
        ).to(device)
        self.model.eval()
        config = self.model.config
        self.context = int(
            getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)
        )
        self.bos = self.tokenizer.bos_token_id
        if self.bos is None:
            self.bos = self.tokenizer.eos_token_id

    @torch.no_grad()
    def score_texts(self, texts: list[str]) -> JudgeScore:
        prefix = [] if self.bos is None else [self.bos]
        width = self.context - len(prefix)
        chunks: list[tuple[int, list[int]]] = []
        for n, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            chunks += [(n, prefix + ids[i : i + width]) for i in range(0, len(ids), width)]
        nll = torch.zeros(len(texts), dtype=torch.float64)
        count = torch.zeros(len(texts), dtype=torch.long)
        for start in range(0, len(chunks), self.batch_size):
            batch = chunks[start : start + self.batch_size]
            longest = max(len(ids) for _, ids in batch)
            x = torch.zeros(len(batch), longest, dtype=torch.long)
            keep = torch.zeros(len(batch), longest, dtype=torch.bool)
            for b, (_, ids) in enumerate(batch):
                x[b, : len(ids)] = torch.tensor(ids)
                keep[b, : len(ids)] = True
            x, keep = x.to(self.device), keep.to(self.device)
            logits = self.model(input_ids=x, attention_mask=keep.long()).logits  # [B, T, V]
            logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
            ce = -logp.gather(-1, x[:, 1:, None])[..., 0]  # [B, T − 1]: token j+1 given ≤ j
            scored = keep[:, 1:]
            for b, (n, _) in enumerate(batch):
                nll[n] += float(ce[b][scored[b]].sum())
                count[n] += int(scored[b].sum())
        return pooled(nll, count)


def parse_judge(spec: str, registry: Registry | None = None, device: str = "cpu") -> Judge:
    """`hf:DIR` → `HFJudge`; otherwise an oemdm AR checkpoint (run or checkpoint dir)."""
    if spec.startswith(HF_PREFIX):
        from oemdm_core.runtime.device import resolve_device

        return HFJudge(spec[len(HF_PREFIX) :], device=str(resolve_device(device)))
    from oemdm_core.runtime.checkpoint.restore import load_checkpoint

    model, _, data, _ = load_checkpoint(spec, registry, device)
    return OeMDMJudge(model, data.tokenizer)
