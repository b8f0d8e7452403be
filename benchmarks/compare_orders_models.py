"""The models, profiles and per-model training job of `compare_orders.py`.

One job = one (setting, model, seed): an `ExperimentConfig` trained with `oemdm_core.runtime.trainer.fit`
into `<out>/runs/<setting>/<model>/seed<seed>`, then evaluated (deterministic NELBO and the
discrete-T bound on the test split) and sampled. Its result goes to
`<out>/results/<setting>-<model>-seed<seed>.json`; a job whose result file exists is finished
and never rerun, and a job interrupted mid-training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from compare_orders_eval import monte_carlo_metrics
from compare_orders_report import order_exponents, unigram_entropy

from oemdm_core import OeMDM, registry
from oemdm_core.runtime.checkpoint.store import EXPERIMENT_FILE, LATEST_CHECKPOINT, TOKENIZER_FILE
from oemdm_core.runtime.data_cache import build_data, eval_batches
from oemdm_core.runtime.evaluation.likelihood import evaluate
from oemdm_core.runtime.experiment import ExperimentConfig, check_components, parse_config
from oemdm_core.runtime.trainer import fit

MODEL_DIR = "model"  # inside the checkpoint directory (see oemdm_core.runtime.checkpoint.store)


# -- the models --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One model of the comparison: an order, the attention its structured estimator needs,
    and the sampler used for its samples."""

    key: str
    order: dict[str, Any]
    attention: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "ancestral"})
    paper_owt_ppl: float | None = None  # the paper's OpenWebText perplexity, for reference
    estimator: dict[str, Any] = field(default_factory=lambda: {"name": "auto"})


def model_specs(block_sizes: tuple[int, ...] = (16, 4)) -> dict[str, ModelSpec]:
    """The compared models, in training order (the AR model first: it judges samples)."""
    specs = [
        ModelSpec(
            "ar",
            {"name": "ar"},
            {"attention": "causal"},
            {"name": "ar"},
            paper_owt_ppl=17.54,
        ),
        ModelSpec("mdm", {"name": "mdm"}, paper_owt_ppl=23.21),
    ]
    for size in block_sizes:
        specs.append(
            ModelSpec(
                f"block{size}",
                {"name": "block", "block_size": size},
                {"attention": "block_causal", "block_size": size},
                {"name": "block", "steps": size},
                paper_owt_ppl=20.73 if size == 4 else None,
            )
        )
    specs.append(ModelSpec("genmd4", {"name": "genmd4"}, paper_owt_ppl=21.8))
    specs.append(ModelSpec("lomdm", {"name": "lomdm"}, paper_owt_ppl=20.4))
    return {s.key: s for s in specs}


def ablation_specs() -> dict[str, ModelSpec]:
    """Variants trained only when named in `--models`: `lomdm-is` is LoMDM trained with
    importance-sampled times (the generic estimator's `times: importance`)."""
    spec = ModelSpec(
        "lomdm-is", {"name": "lomdm"}, estimator={"name": "generic", "times": "importance"}
    )
    return {spec.key: spec}


def select_specs(specs: dict[str, ModelSpec], models: str | None) -> dict[str, ModelSpec]:
    """The models named in the comma-separated `models` (None: all of `specs`), from `specs`
    and the ablations; raises SystemExit naming unknown names and the valid ones."""
    if not models:
        return specs
    available = {**specs, **ablation_specs()}
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in available]
    if unknown or not wanted:
        raise SystemExit(f"--models: unknown {unknown}; valid: {', '.join(available)}")
    return {k: v for k, v in available.items() if k in wanted}


# -- profiles ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """Everything that sets the size and cost of a comparison."""

    name: str
    backbone: dict[str, Any]
    length: int = 256
    batch_size: int = 8
    steps: int = 100
    seeds: tuple[int, ...] = (0, 1)
    lr: float = 2e-3
    eval_sequences: int = 32
    num_times: int = 8
    bound_steps: int = 256
    num_samples: int = 8
    sample_steps: int = 64
    device: str = "auto"
    dataset: dict[str, Any] | None = None  # None: the corpus file (text-files)
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"name": "char"})
    extra_training: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None  # None: every model of `model_specs()`
    zero_shot: tuple[str, ...] = ()  # corpora (repo-relative) scored by every model, unseen
    judge_steps: tuple[int, ...] = ()  # extra sampler steps T whose samples the AR model scores


PROFILES: dict[str, Profile] = {
    # 68 s on 2 idle CPU cores (2 workers): a smoke test of every stage, not a result.
    "quick": Profile(
        "quick",
        {"preset": "small", "d_model": 64, "n_layers": 2, "n_heads": 2},
        steps=40,
        seeds=(0,),
        eval_sequences=16,
        num_times=4,
        num_samples=4,
        sample_steps=32,
    ),
    # The CPU benchmark: `small` preset (4 × 256), L = 256, 150 steps, 2 seeds, 22 models.
    # Measured: 65 min on 2 idle cores with `--workers auto` (2 processes × 1 thread; about
    # 0.75 s per AR/MDM step); one process alone would need about twice that.
    "default": Profile("default", {"preset": "small"}, steps=150),
    # The paper's table (AR < LoMDM < block4 < GenMD4 < MDM on OpenWebText) at CPU scale:
    # subword text (byte-level BPE, 2048 ids), L = 128, the small preset, the paper's five
    # models, zero-shot on the two other bundled corpora and gen-PPL at T = 64 and 256.
    # Measured cost (1 idle core, batch 8): 0.51 s per AR/MDM step, 1.0 s per block4/GenMD4/
    # LoMDM step, so 3000 steps of all five models take 3.4 h per seed on one core and the
    # matched setting (AR/MDM 7000 steps) about as much again.
    "paper-cpu": Profile(
        "paper-cpu",
        {"preset": "small"},
        length=128,
        steps=3000,
        eval_sequences=64,
        num_samples=16,
        sample_steps=64,
        tokenizer={"name": "bpe", "vocab_size": 2048},
        models=("ar", "mdm", "block4", "genmd4", "lomdm"),
        zero_shot=("../shared/data/kjv.txt.xz", "../shared/data/shakespeare.txt.xz"),
        judge_steps=(256,),
    ),
    # GPU, OpenWebText protocol (MDLM / BD3-LM): GPT-2 tokenizer, L = 1024, 12 × 768.
    "gpu-owt": Profile(
        "gpu-owt",
        {"preset": "base"},
        length=1024,
        batch_size=512,
        steps=100_000,
        seeds=(0,),
        lr=3e-4,
        eval_sequences=1024,
        num_times=16,
        bound_steps=1024,
        num_samples=16,
        sample_steps=1024,
        device="cuda",
        dataset={
            "name": "hf",
            "path": "openwebtext",
            "splits": {
                "train": "train[:-100000]",
                "validation": "train[-100000:]",
                "test": "train[-100000:]",
            },
        },
        tokenizer={"name": "hf", "path": "gpt2-tokenizer.json"},
        extra_training={"grad_accum": 4, "bf16": True, "compile": True, "ema": 0.9999},
    ),
    # GPU, LM1B protocol (MDLM): bert-base-uncased tokenizer, L = 128, 12 × 768.
    "gpu-lm1b": Profile(
        "gpu-lm1b",
        {"preset": "base"},
        length=128,
        batch_size=512,
        steps=100_000,
        seeds=(0,),
        lr=3e-4,
        eval_sequences=4096,
        num_times=16,
        bound_steps=128,
        num_samples=16,
        sample_steps=128,
        device="cuda",
        dataset={"name": "hf", "path": "lm1b", "splits": {"train": "train", "test": "test"}},
        tokenizer={"name": "hf", "path": "bert-base-uncased-tokenizer.json"},
        extra_training={"bf16": True, "compile": True, "ema": 0.9999},
    ),
}


def experiment_config(
    profile: Profile,
    spec: ModelSpec,
    steps: int,
    seed: int,
    run_dir: Path,
    corpus: Path | None,
    cache_dir: Path,
    progress: bool,
) -> ExperimentConfig:
    """The validated `ExperimentConfig` of one job."""
    dataset = profile.dataset or {"name": "text-files", "paths": [str(corpus)]}
    protocol = "padded" if dataset.get("name") == "hf" and profile.length <= 128 else "packed"
    data = {
        "dataset": dataset,
        "tokenizer": profile.tokenizer,
        "protocol": protocol,
        "length": profile.length,
        "cache_dir": str(cache_dir),
    }
    every = max(1, steps // 4)
    cfg = parse_config(
        {
            "data": data,
            "model": {
                "backbone": {"name": "transformer", **profile.backbone, **spec.attention},
                "order": spec.order,
                "schedule": {"name": "linear"},
                "estimator": spec.estimator,
            },
            "training": {
                "steps": steps,
                "batch_size": profile.batch_size,
                "lr": profile.lr,
                "warmup_steps": max(1, min(2500, steps // 10)),
                "seed": seed,
                "log_every": max(1, steps // 50),
                "eval_every": 0,
                "checkpoint_every": every,
                "device": profile.device,
                "run_dir": str(run_dir),
                "progress": progress,
                **profile.extra_training,
            },
            "evaluation": {
                "split": "test",
                "mode": "deterministic",
                "num_times": profile.num_times,
                "max_sequences": profile.eval_sequences,
                "batch_size": min(32, profile.eval_sequences),
                "seed": 0,
            },
            "sampling": {"num_samples": 0},
        }
    )
    check_components(cfg, registry)
    return cfg


# -- training cost -----------------------------------------------------------------------
def passes_per_step(spec: ModelSpec, vocab_size: int = 8, length: int = 16) -> float:
    """Backbone passes of one training step, in units of one pass over the batch at length L.

    Measured, not assumed: a forward hook sums the token positions every backbone call reads
    during one `nelbo` call with gradients on (tiny preset; the count does not depend on the
    width); a call made without gradient (LoMDM's stop-gradient clean-x pass) is a forward
    only and counts 1/3 (forward ≈ 1/3 of forward + backward). AR teacher forcing 1, MDM 1,
    block-vectorized 2 (input [z_t ; x] of length 2L), GenMD4 K = 2, LoMDM ⅓ + K = 2⅓ (3
    with `stop_gradient: false`).
    """
    block = spec.order.get("block_size", 1)
    length = max(length, 2 * block)
    torch.manual_seed(0)
    model = OeMDM.from_config(
        {
            "vocab_size": vocab_size,
            "length": length,
            "backbone": {"name": "transformer", "preset": "tiny", **spec.attention},
            "order": spec.order,
            "schedule": {"name": "linear"},
        }
    )
    seen = []
    handle = model.backbone.register_forward_hook(
        lambda m, args, out: seen.append(
            args[0].numel() * (1 if torch.is_grad_enabled() else 1 / 3)
        )
    )
    x = torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    try:
        model.nelbo(x, generator=torch.Generator().manual_seed(0)).total.sum().backward()
    finally:
        handle.remove()
    return sum(seen) / x.numel()


# -- one job -----------------------------------------------------------------------------
@dataclass
class JobResult:
    """What one trained model reports (bits per token = bits per character for `char`)."""

    setting: str
    model: str
    seed: int
    steps: int
    passes_per_step: float
    backbone_passes: float  # steps × passes_per_step × batch (sequence passes at length L)
    wall_s: float
    resumed: bool
    test_bpt: float
    test_bpt_stderr: float
    bound_steps: int
    bound_bpt: float
    sample_tokens: list[list[int]]
    sample_order: list[list[int]]
    sample_nfe: int
    curve: list[tuple[int, float]]  # (step, train bits/token)
    run_dir: str
    sample_texts: list[str]  # decoded samples
    data_unigram_bits: float  # unigram entropy of the evaluated test sequences
    passage_tokens: list[int]  # the first test sequence
    passage_text: str
    passage_w: list[float] | None  # learned exponents w on the passage (learned orders)
    mean_w: list[float] | None  # exponents w averaged over the evaluated test sequences [L]
    # Unbiased Monte Carlo estimates (see `monte_carlo_metrics`); None until computed.
    test_bpt_mc: float | None = None
    test_bpt_mc_stderr: float | None = None
    bound_bpt_mc: float | None = None
    bound_bpt_mc_stderr: float | None = None
    mc_method: str | None = None  # MC_METHOD when computed by this version

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> JobResult:
        data = json.loads(path.read_text())
        data["curve"] = [tuple(p) for p in data["curve"]]
        return cls(**data)


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train bits/token) of every logged step in `run_dir/metrics.jsonl`."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    points = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "train/bits_per_token" in row:
            points[row["step"]] = row["train/bits_per_token"]
    return sorted(points.items())


def load_trained(run_dir: Path) -> OeMDM:
    """The EMA weights of the finished run in `run_dir`."""
    model = OeMDM.from_pretrained(run_dir / LATEST_CHECKPOINT / MODEL_DIR)
    return model.eval()


def run_job(
    profile: Profile,
    spec: ModelSpec,
    setting: str,
    steps: int,
    seed: int,
    out: Path,
    corpus: Path | None,
    passes: float,
    progress: bool = True,
) -> JobResult:
    """Train (or resume), evaluate and sample one model; writes and returns its result."""
    run_dir = out / "runs" / setting / spec.key / f"seed{seed}"
    cfg = experiment_config(profile, spec, steps, seed, run_dir, corpus, out / "cache", progress)
    resumed = (run_dir / LATEST_CHECKPOINT / EXPERIMENT_FILE).is_file()
    if not resumed and run_dir.exists():
        shutil.rmtree(run_dir)  # a start that wrote no checkpoint: begin again cleanly
    t0 = time.perf_counter()
    fitted = fit(cfg, registry, resume=run_dir if resumed else None)
    wall = time.perf_counter() - t0
    ev = fitted.evaluation  # deterministic NELBO of the EMA weights on the test split

    model = load_trained(run_dir)
    data, batches = test_batches(cfg, run_dir, profile)
    bound = evaluate(
        model, batches, "deterministic", profile.num_times, seed=0, steps=profile.bound_steps
    )
    mc = monte_carlo_metrics(model, batches, profile)
    sampler_spec = dict(spec.sampler)
    name = sampler_spec.pop("name")
    if name == "ancestral":
        sampler_spec.setdefault("steps", profile.sample_steps)
    sampler = registry.build("sampler", name, **sampler_spec)
    g = torch.Generator(device=model.device).manual_seed(1000 + seed)
    sample = sampler.sample(model, profile.num_samples, generator=g)
    passage = batches[0][:1]  # [1, L]
    w = order_exponents(model, passage)
    mean_w = None
    if w is not None:
        mean_w = torch.cat([order_exponents(model, b) for b in batches]).float().mean(0)
    return JobResult(
        setting=setting,
        model=spec.key,
        seed=seed,
        steps=steps,
        passes_per_step=passes,
        backbone_passes=steps * passes * profile.batch_size,
        wall_s=wall,
        resumed=resumed,
        test_bpt=ev.bits_per_token,
        test_bpt_stderr=ev.stderr_bits,
        bound_steps=profile.bound_steps,
        bound_bpt=bound.bits_per_token,
        sample_tokens=sample.tokens.cpu().tolist(),
        sample_order=sample.order.cpu().tolist(),
        sample_nfe=int(sample.nfe),
        curve=read_curve(run_dir),
        run_dir=str(run_dir),
        sample_texts=[data.decode(row) for row in sample.tokens.cpu().tolist()],
        data_unigram_bits=unigram_entropy(torch.cat(list(batches))),
        passage_tokens=passage[0].tolist(),
        passage_text=data.decode(passage[0].tolist()),
        passage_w=None if w is None else w[0].float().cpu().tolist(),
        mean_w=None if mean_w is None else mean_w.cpu().tolist(),
        **mc,
    )


def test_batches(cfg: ExperimentConfig, run_dir: Path, profile: Profile):
    """(data, the evaluated test batches `[≤32, L]`) of a run, with its saved tokenizer."""
    record = json.loads((run_dir / LATEST_CHECKPOINT / TOKENIZER_FILE).read_text())
    data = build_data(cfg, registry, record, splits=("evaluation",))
    return data, eval_batches(data.evaluation, cfg.evaluation.batch_size, profile.eval_sequences)


def backfill(
    result: JobResult, profile: Profile, spec: ModelSpec, out: Path, corpus: Path | None
) -> JobResult:
    """Recompute the evaluation of a result written by an older version: the Monte Carlo
    metrics, and the deterministic ones with the current `oemdm_core.runtime.evaluation.likelihood`."""
    run_dir = Path(result.run_dir)
    cfg = experiment_config(
        profile, spec, result.steps, result.seed, run_dir, corpus, out / "cache", False
    )
    _, batches = test_batches(cfg, run_dir, profile)
    model = load_trained(run_dir)
    mc = monte_carlo_metrics(model, batches, profile)
    det = evaluate(model, batches, "deterministic", profile.num_times, seed=0)
    bound = evaluate(
        model, batches, "deterministic", profile.num_times, seed=0, steps=profile.bound_steps
    )
    return replace(
        result,
        test_bpt=det.bits_per_token,
        test_bpt_stderr=det.stderr_bits,
        bound_bpt=bound.bits_per_token,
        **mc,
    )


def matched_steps(steps: int, passes: float, reference_passes: float) -> int:
    """Steps that give a model with `passes` per step the compute of `steps` reference steps."""
    return max(1, int(math.ceil(steps * reference_passes / passes - 1e-9)))


def with_overrides(profile: Profile, **changes: Any) -> Profile:
    """`profile` with the non-None `changes` applied."""
    return replace(profile, **{k: v for k, v in changes.items() if v is not None})
