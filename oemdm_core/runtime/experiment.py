"""The experiment config: data, model components, training, evaluation and sampling.

Loaded from YAML or JSON, then dotted `--set key=value` overrides (dict work: `config_dicts`);
every section forbids unknown keys and every field has a default and a description (`oemdm
config show`); errors are one line per problem, naming the dotted path and what is allowed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oemdm_core.errors import ConfigError, OeMDMWarning, UnknownComponentError, closest
from oemdm_core.errors import renamed_attributes as renamed
from oemdm_core.model.config import ComponentSpec, ModelConfig
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.plugin.strict import NoBoolNumbers
from oemdm_core.runtime.config_dicts import apply_override, merge_config, read_config_file

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelSection",
    "SamplingConfig",
    "TrainingConfig",
    "check_components",
    "commented_config_yaml",
    "format_errors",
    "load_config",
    "parse_config",
]


Beta = Annotated[float, Field(ge=0, lt=1)]  # an AdamW moment decay


class Section(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid")


def _spec(what: str, name: str, **options: Any):
    return Field(
        default_factory=lambda: ComponentSpec(name=name, **options),
        description=f"{what}: registry name plus options (see `oemdm plugins`).",
    )


class DataConfig(Section):
    dataset: ComponentSpec = _spec("Dataset", "pydoc")
    tokenizer: ComponentSpec = _spec("Tokenizer", "char")
    protocol: Literal["packed", "padded"] = Field(
        default="packed",
        description="packed: contiguous chunks of L tokens; padded: one document per sequence, pad id = V_tokenizer.",
    )
    length: int = Field(default=64, gt=0, description="Sequence length L.")
    split_lines: bool = Field(
        default=False, description="Treat every non-empty line as a document (padded protocol)."
    )
    cache_dir: str | None = Field(
        default=None, description="Tokenized-data cache (default $OEMDM_CACHE or ~/.cache/oemdm)."
    )


class ModelSection(Section):
    backbone: ComponentSpec = _spec(
        "Denoiser network", "transformer", preset="small", d_model=96, n_layers=2, n_heads=4
    )
    order: ComponentSpec = _spec("Generation order", "lomdm")
    schedule: ComponentSpec = _spec("Base noise schedule", "linear")
    estimator: ComponentSpec = _spec("NELBO estimator (auto = fastest that fits)", "auto")


class TrainingConfig(Section):
    steps: int = Field(default=1500, gt=0, description="Optimizer steps (sets the lr schedule).")
    stop_after: int | None = Field(
        default=None,
        gt=0,
        description="Stop this run after this step (resume later); None = steps.",
    )
    batch_size: int = Field(default=32, gt=0, description="Global batch in sequences per step.")
    grad_accum: int = Field(default=1, gt=0, description="Micro-batches per step (per process).")
    lr: float = Field(default=3e-3, gt=0, description="Peak learning rate (AdamW).")
    min_lr_ratio: float = Field(
        default=0.1, ge=0, le=1, description="Final lr of the cosine decay as a fraction of lr."
    )
    warmup_steps: int = Field(default=100, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    betas: tuple[Beta, Beta] = Field(default=(0.9, 0.98), description="AdamW betas, in [0, 1).")
    grad_clip: float = Field(default=1.0, ge=0, description="Max global grad norm (0 = off).")
    ema: float = Field(
        default=0.99,
        ge=0,
        lt=1,
        description="EMA decay of the weights used for eval/samples (0 = off).",
    )
    seed: int = Field(default=0, description="Seed of weights, data order and noise draws.")
    log_every: int = Field(
        default=10, gt=0, description="Steps between logged scalars (host syncs)."
    )
    eval_every: int = Field(
        default=500, ge=0, description="Steps between evaluations (0 = end only)."
    )
    checkpoint_every: int = Field(
        default=500, ge=0, description="Steps between checkpoints (0 = end only)."
    )
    keep_checkpoints: int = Field(
        default=2,
        gt=0,
        description="Checkpoints kept (newest first), so a corrupt newest one is not fatal.",
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="Several processes: ddp (replicas) or fsdp (sharded; FSDP2)."
    )
    device: str = Field(default="auto", description="auto (cuda if available), cpu, cuda, cuda:1 …")
    bf16: bool = Field(default=True, description="bf16 autocast on CUDA (ignored on CPU).")
    compile: bool = Field(default=False, description="torch.compile the backbone.")
    run_dir: str | None = Field(
        default=None,
        description="Output directory (default a fresh runs/<order>-<timestamp>[-k]).",
    )
    progress: bool = Field(default=True, description="Show a progress bar.")


class EvaluationConfig(Section):
    split: Literal["validation", "test"] = Field(
        default="validation", description="Split to evaluate."
    )
    mode: Literal["deterministic", "monte-carlo"] = Field(
        default="deterministic",
        description="Fixed importance-weighted t-grid and seeds, or Monte Carlo.",
    )
    num_times: int = Field(
        default=16,
        gt=0,
        description="Times per sequence (grid points or draws); use >= 16 in deterministic mode.",
    )
    max_sequences: int | None = Field(
        default=64, gt=0, description="Evaluate the first N sequences (None = all)."
    )
    batch_size: int = Field(default=32, gt=0, description="Evaluation batch size.")
    seed: int = Field(default=0, description="Seed of the evaluation noise.")


class SamplingConfig(Section):
    sampler: ComponentSpec = _spec("Sampler", "ancestral", steps=128)
    num_samples: int = Field(default=3, ge=0, description="Samples printed and logged at the end.")
    seed: int = Field(default=0, description="Sampling seed.")


class ExperimentConfig(Section):
    """Everything `oemdm train` needs."""

    data: DataConfig = Field(default_factory=DataConfig, description="Corpus and tokenizer.")
    model: ModelSection = Field(default_factory=ModelSection, description="Model components.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Optimisation.")
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Periodic and final evaluation."
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Samples.")

    def model_config_for(self, vocab_size: int) -> ModelConfig:
        """The `ModelConfig` of this experiment for a tokenizer with `vocab_size` ids."""
        return ModelConfig(
            vocab_size=vocab_size, length=self.data.length, **self.model.model_dump()
        )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- loading -----------------------------------------------------------------------------
def _model_at(loc: tuple) -> type[BaseModel] | None:
    cls: Any = ExperimentConfig
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        cls = field.annotation
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def format_errors(exc: ValidationError) -> str:
    """One line per problem: `dotted.path: what was wrong; what is allowed`."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        path = ".".join(loc)
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            hint = closest(loc[-1], allowed)
            lines.append(
                f"{path}: unknown key; valid keys: {', '.join(allowed)}"
                + (f" (did you mean '{hint}'?)" if hint else "")
            )
        else:
            ctx = err.get("ctx") or {}
            expected = ctx.get("expected") or err.get("msg", "invalid")
            lines.append(f"{path}: got {err.get('input')!r}; {expected}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Defaults ← `base` or the file at `path` ← overrides, validated."""
    data = ExperimentConfig().to_dict() if base is None else json.loads(json.dumps(base))
    if path is not None:
        data = merge_config(data, read_config_file(path))
    for assignment in overrides or []:
        apply_override(data, assignment)
    return parse_config(data)


def check_components(cfg: ExperimentConfig, registry: Registry | None = None) -> None:
    """Validate every component's name and options against the registry (errors name the
    dotted path)."""
    registry = resolve_registry(registry)
    specs = {
        "data.dataset": ("dataset", cfg.data.dataset),
        "data.tokenizer": ("tokenizer", cfg.data.tokenizer),
        "model.backbone": ("backbone", cfg.model.backbone),
        "model.order": ("order", cfg.model.order),
        "model.schedule": ("schedule", cfg.model.schedule),
        "sampling.sampler": ("sampler", cfg.sampling.sampler),
    }
    for key in ("vocab_size", "max_length"):
        if key in cfg.model.backbone.options:
            raise ConfigError(
                f"model.backbone.{key}: set from the "
                + ("tokenizer" if key == "vocab_size" else "data.length")
                + "; remove it (change data.length for longer sequences)"
            )
    if cfg.model.estimator.name != "auto":
        specs["model.estimator"] = ("estimator", cfg.model.estimator)
    for path, (kind, spec) in specs.items():
        try:
            cls = registry.get(kind, spec.name)
        except UnknownComponentError as exc:
            raise ConfigError(f"{path}.name: {exc}") from None
        cls.validate_options(prefix=path, **spec.options)
    tc = cfg.training
    if tc.warmup_steps > tc.steps:
        warnings.warn(
            f"training.warmup_steps={tc.warmup_steps} is more than training.steps={tc.steps}: "
            f"the learning rate never reaches training.lr={tc.lr}; use warmup_steps <= steps",
            OeMDMWarning,
            stacklevel=2,
        )


def commented_config_yaml(
    model: type[BaseModel] = ExperimentConfig, values: dict | None = None, indent: int = 0
) -> str:
    """YAML of `values` (default: the defaults) with each field's description as a comment."""
    if values is None:
        values = model().model_dump(mode="json")
    pad = "  " * indent
    lines = []
    for name, field in model.model_fields.items():
        value = values.get(name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, Section):
            lines.append(f"{pad}{name}:  # {field.description}")
            lines.append(commented_config_yaml(sub, value, indent + 1))
        else:
            dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
            dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"{pad}{name}: {dumped}  # {field.description}")
    return "\n".join(lines)


__getattr__ = renamed(__name__, {"describe": "commented_config_yaml"}, globals())
