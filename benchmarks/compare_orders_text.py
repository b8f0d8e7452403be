"""The text measurements of the `paper-cpu` profile of `compare_orders.py`, added after
training from each finished run: zero-shot bits per token on unseen corpora, generative
perplexity at several sampler step counts T, and what a learned order does on text.

Every measurement of one job is cached in `<out>/results/text-<setting>-<model>-seed<s>.json`
(computed once, like the result files); nothing here retrains.

Token classes (`token_classes`), from the decoded BPE token with surrounding whitespace removed:
`space` (only whitespace), `punctuation` (no letter or digit), `frequent` (a word piece among
the most frequent training tokens that together cover half of the training word-piece mass)
and `rare` (every other word piece).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from compare_orders_models import Profile, experiment_config, load_trained, test_batches
from compare_orders_report import (
    Column,
    _plt,
    aggregate,
    average_rank,
    order_exponents,
    save_figure,
    unigram_entropy,
)
from torch import Tensor

from oemdm_core import OeMDM, registry
from oemdm_core.runtime.checkpoint.store import LATEST_CHECKPOINT, TOKENIZER_FILE
from oemdm_core.runtime.data_cache import build_data
from oemdm_core.runtime.evaluation.data_spec import parse_data_spec
from oemdm_core.runtime.evaluation.likelihood import evaluate
from oemdm_core.runtime.evaluation.sample_metrics import generative_perplexity
from oemdm_core.runtime.evaluation.zero_shot import prepare, zero_shot

CLASSES = ("space", "punctuation", "frequent", "rare")
FREQUENT_MASS = 0.5  # the frequent word pieces cover this share of training word pieces


@dataclass
class TextResult:
    """The text measurements of one job (bits per token, natural perplexities)."""

    setting: str
    model: str
    seed: int
    zero_shot: dict[str, dict[str, float]]  # corpus → {bits_per_token, stderr_bits, ppl}
    gen: dict[str, dict[str, float]]  # "T" → {gen_ppl, nfe, unigram_bits}
    classes: dict[str, dict[str, float | None]] | None  # class → {share, rank, rank_se (None:
    # one sequence)}; learned orders only
    position_trend: float | None  # mean Spearman(position, rank by w) over test sequences
    rank_by_position: list[float] | None  # mean generation rank per position [L], 0 = first

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TextResult:
        return cls(**json.loads(path.read_text()))


def sampler_at(spec_sampler: dict[str, Any], steps: int, length: int) -> dict[str, Any]:
    """The model's own sampler at about `steps` network evaluations in all: ancestral takes
    T = `steps`; the block sampler `steps` / (L / B) inner steps per block, at most B (its
    exact limit); the AR sampler always takes L."""
    options = dict(spec_sampler)
    name = options["name"]
    if name == "ancestral":
        options["steps"] = steps
    elif name == "block":
        size = options["steps"]  # the comparison's block sampler takes B inner steps
        blocks = length // size
        options["steps"] = max(1, min(size, steps // blocks))
    return options


def generation_quality(
    model: OeMDM,
    judge: OeMDM,
    spec_sampler: dict[str, Any],
    steps: int,
    num_samples: int,
    seed: int,
) -> dict[str, float]:
    """Gen-PPL under the AR `judge`, NFE and unigram entropy of `num_samples` samples."""
    options = sampler_at(spec_sampler, steps, model.length)
    name = options.pop("name")
    sampler = registry.build("sampler", name, **options)
    g = torch.Generator(device=model.device).manual_seed(2000 + seed)
    sample = sampler.sample(model, num_samples, generator=g)
    tokens = sample.tokens.cpu()
    return {
        "gen_ppl": generative_perplexity(tokens, judge).perplexity,
        "nfe": float(sample.nfe),
        "unigram_bits": unigram_entropy(tokens),
    }


def zero_shot_scores(
    model: OeMDM, tokenizer, corpora: list[Path], length: int, num_times: int, max_sequences: int
) -> dict[str, dict[str, float]]:
    """Deterministic NELBO (bits per token) on the test split (last 5 %) of each corpus."""
    specs = [
        parse_data_spec(f"text-files:{{paths: [{json.dumps(str(c))}]}}@test", registry)
        for c in corpora
    ]
    prepared = prepare(specs, tokenizer, model.vocab_size, length, "packed")

    def score(batches: list[Tensor]):
        return evaluate(model, batches, "deterministic", num_times, seed=0)

    rows = zero_shot(prepared, score, 16, max_sequences)
    return {
        corpus.name.split(".")[0]: {
            "bits_per_token": r.bits_per_token,
            "stderr_bits": r.stderr_bits,
            "ppl": 2.0**r.bits_per_token,
        }
        for corpus, r in zip(corpora, rows, strict=True)
    }


def token_classes(tokenizer, train_tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """The class index (into CLASSES) of every token id `[V]`, from the training counts."""
    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size)
    classes = np.empty(vocab_size, dtype=np.int64)
    for i in range(vocab_size):
        text = tokenizer.decode([i]) if i < tokenizer.vocab_size else ""
        stripped = text.strip()
        if not stripped:
            classes[i] = 0
        elif not any(ch.isalnum() for ch in stripped):
            classes[i] = 1
        else:
            classes[i] = 3
    words = np.flatnonzero(classes == 3)
    by_count = words[np.argsort(-counts[words], kind="stable")]
    covered = np.cumsum(counts[by_count]) / max(1, counts[words].sum())
    frequent = by_count[: int(np.searchsorted(covered, FREQUENT_MASS)) + 1]
    classes[frequent] = 2
    return classes


def order_by_class(
    model: OeMDM, batches: list[Tensor], classes: np.ndarray
) -> tuple[dict[str, dict[str, float]], float, list[float]] | None:
    """Where a learned order puts each token class: per class, its share of test tokens and the
    mean normalised generation rank (0 = generated first, 1 = last) of its tokens, with the
    standard error across sequences; the mean Spearman correlation of rank with position
    (+1 = left to right); the mean rank per position `[L]`. None for fixed orders.

    Rank: positions of a sequence sorted by the exponent w^i(x), highest first (higher w =
    un-masked earlier in reverse time; the order the model's forward process implies)."""
    ranks, ids = [], []
    for x in batches:
        w = order_exponents(model, x)
        if w is None:
            return None
        # average_rank ranks ascending "steps"; −w puts the highest exponent first
        ranks.append(average_rank(-w.float().cpu()) / max(1, x.shape[1] - 1))
        ids.append(x.cpu())
    rank, tokens = torch.cat(ranks), torch.cat(ids)  # [N, L]
    cls = torch.from_numpy(classes)[tokens]  # [N, L]
    table = {}
    for k, name in enumerate(CLASSES):
        member = cls == k
        per_seq = [rank[n][member[n]].mean() for n in range(rank.shape[0]) if member[n].any()]
        if not per_seq:
            continue
        values = torch.stack(per_seq).double()
        se = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else None
        table[name] = {
            "share": float(member.double().mean()),
            "rank": float(rank[member].double().mean()),
            "rank_se": se,
        }
    position = torch.arange(rank.shape[1], dtype=torch.float64)
    centred = rank.double() - rank.double().mean(-1, keepdim=True)
    pc = position - position.mean()
    trend = (centred * pc).sum(-1) / (centred.norm(dim=-1) * pc.norm()).clamp_min(1e-12)
    return table, float(trend.mean()), rank.double().mean(0).tolist()


def plot_text_order(results: list[TextResult], path: Path) -> Path:
    """Two panels: mean generation rank per position, and mean rank per token class, one
    series per learned-order model (first seed)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    shown = [r for r in results if r.classes is not None]
    for r in shown:
        left.plot(r.rank_by_position, label=f"{r.model} (seed {r.seed})")
    left.set_xlabel("position")
    left.set_ylabel("mean generation rank (0 = first)")
    left.set_ylim(0, 1)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    width = 0.8 / max(1, len(shown))
    for j, r in enumerate(shown):
        names = [c for c in CLASSES if c in r.classes]
        xs = [CLASSES.index(c) + j * width for c in names]
        means = [r.classes[c]["rank"] for c in names]
        errs = [r.classes[c]["rank_se"] or 0.0 for c in names]
        right.bar(xs, means, width, yerr=errs, label=f"{r.model} (seed {r.seed})")
    right.set_xticks([i + 0.4 - width / 2 for i in range(len(CLASSES))], CLASSES)
    right.axhline(0.5, color="grey", lw=0.8, ls="--")
    right.set_ylabel("mean generation rank (0 = first)")
    right.set_ylim(0, 1)
    right.legend(fontsize=8)
    fig.suptitle("learned order on text (test sequences; rank by the exponent w)")
    return save_figure(fig, path)


def text_result_path(out: Path, setting: str, model: str, seed: int) -> Path:
    return out / "results" / f"text-{setting}-{model}-seed{seed}.json"


def measure_text(results, profile, specs, out: Path, corpus: Path | None, judges, log=print):
    """The `TextResult` of every finished job in `results` (cached; see module), for a
    profile with `zero_shot` corpora or `judge_steps`. `judges`: seed → the AR `JobResult`
    whose model scores that seed's samples."""
    repo = Path(__file__).resolve().parents[1]
    corpora = [(repo / c).resolve() for c in profile.zero_shot]
    steps = sorted({profile.sample_steps, *profile.judge_steps})
    judge_models: dict[int, OeMDM] = {}
    measured = []
    for r in results:
        path = text_result_path(out, r.setting, r.model, r.seed)
        if path.is_file():
            measured.append(TextResult.load(path))
            continue
        if r.seed not in judges:
            log(f"no AR judge for seed {r.seed}: text measurements of {r.model} skipped")
            continue
        if r.seed not in judge_models:
            judge_models[r.seed] = load_trained(Path(judges[r.seed].run_dir))
        log(f"text measurements: {r.setting}/{r.model}/seed{r.seed}")
        run_dir = Path(r.run_dir)
        spec = specs[r.model]
        cfg = experiment_config(
            profile, spec, r.steps, r.seed, run_dir, corpus, out / "cache", False
        )
        data, batches = test_batches(cfg, run_dir, profile)
        model = load_trained(run_dir)
        analysis = None
        if model.order.learned:  # a fixed order has no exponents to rank by
            record = json.loads((run_dir / LATEST_CHECKPOINT / TOKENIZER_FILE).read_text())
            train = build_data(cfg, registry, record, splits=("train",)).train
            classes = token_classes(data.tokenizer, train.tokens, model.vocab_size)
            analysis = order_by_class(model, batches, classes)
        gen, by_options = {}, {}
        for t in steps:  # a sampler that takes the same steps at two T is run once
            key = json.dumps(sampler_at(spec.sampler, t, model.length), sort_keys=True)
            if key not in by_options:
                by_options[key] = generation_quality(
                    model, judge_models[r.seed], spec.sampler, t, profile.num_samples, r.seed
                )
            gen[str(t)] = by_options[key]
        result = TextResult(
            setting=r.setting,
            model=r.model,
            seed=r.seed,
            zero_shot=zero_shot_scores(
                model,
                data.tokenizer,
                corpora,
                profile.length,
                profile.num_times,
                profile.eval_sequences,
            ),
            gen=gen,
            classes=None if analysis is None else analysis[0],
            position_trend=None if analysis is None else analysis[1],
            rank_by_position=None if analysis is None else analysis[2],
        )
        result.save(path)
        measured.append(result)
    return measured


def text_rows(rows: list[dict], measured: list[TextResult]) -> list[dict]:
    """`rows` (one per job) with the text measurements as flat columns: `zs_<corpus>` (PPL),
    `gen_ppl_<T>`, `trend` (rank–position correlation of a learned order)."""
    by_job = {(m.setting, m.model, m.seed): m for m in measured}
    out = []
    for row in rows:
        m = by_job.get((row["setting"], row["model"], row["seed"]))
        row = dict(row)
        if m is not None:
            for corpus, z in m.zero_shot.items():
                row[f"zs_{corpus}"] = z["ppl"]
            for t, g in m.gen.items():
                row[f"gen_ppl_{t}"] = g["gen_ppl"]
            row["trend"] = m.position_trend
        out.append(row)
    return out


def class_table(measured: list[TextResult]) -> str:
    """Markdown: per learned-order model and seed, each class's share of test tokens and mean
    generation rank ± SE (0 = first), and the rank–position trend."""
    lines = [
        "| model | seed | "
        + " | ".join(f"{c}: share, rank ± SE" for c in CLASSES)
        + " | trend (Spearman rank vs position) |",
        "|---|---|" + "---|" * (len(CLASSES) + 1),
    ]
    for m in sorted(measured, key=lambda m: (m.model, m.seed)):
        if m.classes is None or m.setting != "steps":
            continue
        cells = []
        for c in CLASSES:
            v = m.classes.get(c)
            se = "" if v is None or v["rank_se"] is None else f" ± {v['rank_se']:.3f}"
            cells.append("–" if v is None else f"{v['share']:.2f}, {v['rank']:.3f}{se}")
        lines.append(
            f"| {m.model} | {m.seed} | " + " | ".join(cells) + f" | {m.position_trend:+.3f} |"
        )
    return "\n".join(lines)


def text_columns(profile: Profile, columns: list[Column]) -> list[Column]:
    """`columns` and, after the perplexity, the zero-shot perplexities and gen-PPL at every T."""
    at = next(i for i, c in enumerate(columns) if c.key == "perplexity") + 1
    zero_shot = [
        Column(f"zero-shot PPL {Path(c).name.split('.')[0]}", f"zs_{Path(c).name.split('.')[0]}", 2)
        for c in profile.zero_shot
    ]
    steps = sorted({profile.sample_steps, *profile.judge_steps})
    gen = [Column(f"gen. PPL T={t}", f"gen_ppl_{t}", 2) for t in steps]
    kept = [c for c in columns[at:] if c.key != "gen_ppl"]
    return [*columns[:at], *zero_shot, *gen, *kept]


def text_sections(measured, out: Path, rows, specs, settings) -> list[str]:
    """The ranking by test perplexity per setting, and the learned order on text."""
    parts = []
    for setting in settings:
        stats = aggregate([r for r in rows if r["setting"] == setting], ["perplexity"])
        ranked = sorted(
            (m for m in specs if (setting, m) in stats),
            key=lambda m: stats[(setting, m)]["perplexity"].mean,
        )
        shown = " < ".join(f"{m} {stats[(setting, m)]['perplexity'].fmt(2)}" for m in ranked)
        parts.append(f"\nRanking by test perplexity ({setting}): {shown}  \n")
    parts.append(
        "paper (OpenWebText): ar 17.5 < lomdm 20.4 < block4 20.7 < genmd4 21.8 < mdm 23.2\n"
    )
    if any(m.classes is not None for m in measured):
        parts.append("\n### Learned order on text (setting: steps)\n")
        parts.append(
            "Rank: each test sequence's positions sorted by the exponent w^i(x), highest "
            "first, normalised to [0, 1] (0 = generated first); share = fraction of test "
            "tokens; SE across sequences.\n"
        )
        parts.append(class_table(measured))
        plot = plot_text_order(
            [m for m in measured if m.setting == "steps"], out / "text_order.png"
        )
        parts.append(f"\n![learned order on text]({plot.name})\n")
    return parts
