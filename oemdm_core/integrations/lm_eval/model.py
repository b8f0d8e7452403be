"""`OeMDMLM`: an oemdm run as an lm-evaluation-harness model (`--model oemdm`).

Imports lm-eval at module level: import it only through `register()` (lm-eval then loads
it when `--model oemdm` is asked for) or when lm-eval is installed.

What the three request types compute (nats; lm-eval reports them as log-probabilities):

- `loglikelihood(context, continuation)`: log p(continuation | context) from
  `scoring` over windows of the model's length L (the context left-truncated to fit;
  a continuation longer than L is scored in L-token chunks, each after the text before it).
  `likelihood=auto` takes the exact value for left-to-right orders (`ar`: the AR
  log-likelihood) and −NELBO, a *lower bound*, for every other order; `exact-order` gives
  any model the exact log-likelihood of its greedy `scorer` order instead.
- `loglikelihood_rolling(text)`: the same for the whole document, given nothing, in
  L-token chunks (the last one after a full-sized context), each token scored once.
- `generate_until(context, gen_kwargs)`: the sampler (`sampler=NAME`, `steps=T`; default:
  the run's own) fills the L − n positions after the last n context ids, n at most
  L − min(max_gen_toks, L/2) (a long context is cut on the left so that the answer gets at
  least that room); the text of the first `max_gen_toks` generated ids is cut at the first
  `until` string.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.utils import simple_parse_args_string

from oemdm_core.cli.args import sampler_from_flags
from oemdm_core.errors import ConfigError, OeMDMWarning
from oemdm_core.integrations.lm_eval.options import parse_model_args
from oemdm_core.integrations.lm_eval.scoring import (
    Continuation,
    Window,
    exact_order_logprob,
    nelbo_logprob,
    scoring_windows,
    teacher_forced_logprob,
    window_batch,
)
from oemdm_core.interfaces.draws import DrawOptions
from oemdm_core.interfaces.requirements import block_order_size, left_to_right_problems
from oemdm_core.plugin.registry import resolve_registry
from oemdm_core.runtime.checkpoint.restore import load_checkpoint
from oemdm_core.runtime.device import resolve_device
from oemdm_core.runtime.evaluation.exact_order import check_scorer

GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature")
DEFAULT_MAX_GEN_TOKS = 256


class OeMDMLM(LM):
    """lm-eval's `oemdm` model; keyword arguments: `ModelArgs` (`options`)."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.options = o = parse_model_args(model_args)
        device = str(resolve_device(o.device, "model_args.device"))
        self.registry = resolve_registry(None)
        self.model, self.config, self.data, self.checkpoint = load_checkpoint(
            o.pretrained, self.registry, device
        )
        self.model.eval()
        self._device = self.model.device
        self.length = self.model.length
        self.likelihood = o.likelihood
        if self.likelihood == "auto":
            left_to_right = block_order_size(self.model.order) == 1
            self.likelihood = "exact-order" if left_to_right else "nelbo"
        self.scorer = self.registry.build("scorer", o.scorer)
        if self.likelihood == "exact-order":
            check_scorer(self.scorer)
        self._samplers: dict[float | None, Any] = {}
        self._sampler(None).check_model(self.model)  # a sampler that cannot serve: now
        self._unrepresentable: set[str] = set()

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """lm-eval's own `--device` and `--batch_size` fill what `model_args` leave unset
        (lm-eval would pass both and fail on the duplicate keyword)."""
        extra = {
            key: value
            for key, value in (additional_config or {}).items()
            if value is not None and key not in arg_dict
        }
        return cls(**arg_dict, **extra)

    def get_model_info(self) -> dict[str, Any]:
        """Recorded in lm-eval's results under `config`: which number the scores are."""
        bound = self.likelihood == "nelbo"
        return {
            "oemdm_checkpoint": str(self.checkpoint),
            "oemdm_order": self.model.order.name,
            "oemdm_likelihood": "nelbo (lower bound)" if bound else "exact-order",
            "oemdm_length": self.length,
        }

    # -- text -> ids ---------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        """Ids of `text`; characters the tokenizer refuses are dropped, with one warning."""
        tokenizer = self.data.tokenizer
        try:
            return tokenizer.encode(text)
        except ValueError:
            bad = set(tokenizer.unrepresentable(text))
            if not bad <= self._unrepresentable:
                self._unrepresentable |= bad
                warnings.warn(
                    f"characters outside the tokenizer's vocabulary were dropped: "
                    f"{''.join(sorted(bad))!r}",
                    OeMDMWarning,
                    stacklevel=2,
                )
            return tokenizer.encode(text.translate({ord(c): None for c in bad}))

    def _pair(self, context: str, continuation: str) -> tuple[list[int], int]:
        """(ids of context + continuation, number of context ids); trailing spaces of the
        context go to the continuation, as lm-eval's HF model does."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self._encode(context + continuation)
        return whole, min(len(self._encode(context)), len(whole))

    # -- scoring -------------------------------------------------------------------------
    def _score(self, documents: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """(log p, greedy) of `ids[start:]` given `ids[:start]` for each (ids, start)."""
        windows: list[tuple[int, Window]] = [
            (k, window)
            for k, (ids, start) in enumerate(documents)
            for window in scoring_windows(ids, start, self.length)
        ]
        windows.sort(key=lambda item: -len(item[1][1]))  # similar lengths: fewer exact steps
        logprob = [0.0] * len(documents)
        greedy = [True] * len(documents)
        size = self.options.batch_size
        for first in range(0, len(windows), size):
            chunk = windows[first : first + size]
            result = self._score_batch([window for _, window in chunk])
            for (k, _), value, is_greedy in zip(
                chunk, result.logprob.tolist(), result.greedy.tolist(), strict=True
            ):
                logprob[k] += value
                greedy[k] = greedy[k] and is_greedy
        return list(zip(logprob, greedy, strict=True))

    def _score_batch(self, windows: list[Window]) -> Continuation:
        batch = window_batch(windows, self.length, self.model.device)
        if self.likelihood == "nelbo":
            return nelbo_logprob(self.model, batch, self.options.num_times, self.options.seed)
        if not left_to_right_problems(self.model.order, self.model.backbone):
            return teacher_forced_logprob(self.model, batch)
        return exact_order_logprob(self.model, batch, self.scorer, self.options.per_step)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(log p(continuation | context), is_greedy) per request.

        is_greedy (lm-eval: greedy decoding from the context would produce exactly the
        continuation): with an exact-order likelihood, whether every token is the argmax of
        p_θ at the step that un-masks it (greedy decoding along that deterministic order then
        reproduces it). With the NELBO always False: a random-order sampler has no single
        greedy path, and "argmax at every position of one masked state" would be a
        different claim.
        """
        documents = [self._pair(*request.args) for request in requests]
        results = self._score(documents)
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text) per request (the NELBO bound or the exact value, as `loglikelihood`)."""
        results = [
            value for value, _ in self._score([(self._encode(r.args[0]), 0) for r in requests])
        ]
        for request, result in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, result)
        return results

    # -- generation ----------------------------------------------------------------------
    def _sampler(self, temperature: float | None):
        """The sampler of `model_args` (or the run's), with `temperature` if not None."""
        if temperature not in self._samplers:
            o = self.options
            assignments = [f"steps={o.steps}"] if o.steps is not None else []
            sampler = sampler_from_flags(
                o.sampler, self.config.sampling.sampler, assignments, "model_args", self.registry
            )
            if temperature is not None:
                if not issubclass(type(sampler).Options, DrawOptions):
                    raise ConfigError(
                        f"gen_kwargs temperature={temperature}: sampler '{sampler.name}' has "
                        "no temperature option; drop it from the task's generation_kwargs"
                    )
                sampler = sampler_from_flags(
                    sampler.name,
                    self.config.sampling.sampler,
                    [*assignments, f"temperature={temperature}"],
                    "model_args",
                    self.registry,
                )
            self._samplers[temperature] = sampler
        return self._samplers[temperature]

    def _generation_settings(self, gen_kwargs: dict) -> tuple[list[str], int, float | None]:
        """(stop strings, max_gen_toks, temperature or None) of one request's gen_kwargs."""
        unknown = sorted(set(gen_kwargs) - set(GEN_KWARGS))
        if unknown:
            raise ConfigError(
                f"gen_kwargs: {unknown[0]!r} is not supported by the oemdm model; it honours "
                f"{', '.join(GEN_KWARGS)}"
            )
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        max_gen_toks = gen_kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
        if isinstance(max_gen_toks, bool) or not isinstance(max_gen_toks, int) or max_gen_toks < 1:
            raise ConfigError(
                f"gen_kwargs max_gen_toks: got {max_gen_toks!r}; expected an integer >= 1"
            )
        temperature = gen_kwargs.get("temperature")
        if gen_kwargs.get("do_sample") is False:
            temperature = 0.0  # lm-eval's greedy decoding: argmax tokens
        return until, max_gen_toks, None if temperature is None else float(temperature)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """The generated text per request (see module). Each request is sampled alone with
        a generator seeded by `seed`: its text does not depend on the other requests."""
        results = []
        for request in requests:
            context, gen_kwargs = request.args
            until, max_gen_toks, temperature = self._generation_settings(gen_kwargs)
            ids = self._encode(context)
            reserved = min(max_gen_toks, self.length // 2)
            prompt = ids[max(0, len(ids) - (self.length - reserved)) :]
            budget = min(max_gen_toks, self.length - len(prompt))
            generator = torch.Generator(device=self.model.device).manual_seed(self.options.seed)
            fixed = torch.tensor(prompt, dtype=torch.long) if prompt else None
            out = self._sampler(temperature).sample(self.model, 1, generator=generator, fixed=fixed)
            end = len(prompt) + budget
            if out.lengths is not None:  # the sampler stopped at an end-of-text token
                end = min(end, int(out.lengths[0]))
            text = self.data.decode(out.tokens[0, len(prompt) : end].tolist())
            for stop in until:
                text = text.split(stop)[0]
            self.cache_hook.add_partial("generate_until", request.args, text)
            results.append(text)
        return results
