"""The component kinds, in one table: what each kind is called, the hook that registers it,
the interface it implements, the conformance kit that checks it, and one line for the docs.

Everything that lists kinds reads `COMPONENT_KINDS`: the registry (`KINDS`, `HOOK_FOR_KIND`),
`oemdm plugins --kind`, `oemdm check-plugin` (which runs `kit` on every component) and the
kinds tables of README.md, docs/concepts.md and docs/plugins.md (`tests/test_kinds.py`
checks that they match). No torch here: the interface and the kit are named, not imported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentKind:
    """One kind of pluggable component.

    name: the kind, as configs and `registry.build(kind, ...)` spell it.
    interface: the abstract base class components of this kind subclass, a name of
        `oemdm_core.interfaces` (and of `oemdm_core`).
    kit: the conformance check of a built component, a name of `oemdm_core.testing`;
        every kit is called as `kit(component, registry=registry)` and raises
        `ConformanceError`.
    description: what a component of this kind does, one line.
    """

    name: str
    interface: str
    kit: str
    description: str

    @property
    def hook(self) -> str:
        """The hookspec a plugin implements to register components of this kind."""
        return f"register_{self.name}s"


COMPONENT_KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("schedule", "BaseSchedule", "check_schedule", "base noise schedule α_b(s)"),
    ComponentKind("order", "Order", "check_order", "per-position forward and reverse schedules"),
    ComponentKind(
        "backbone",
        "Backbone",
        "check_backbone",
        "the denoiser p_θ(x^i | z_t, t): logits and hidden states",
    ),
    ComponentKind("sampler", "Sampler", "check_sampler", "generates sequences from a model"),
    ComponentKind(
        "scorer",
        "Scorer",
        "check_scorer",
        "inference-time order rule: ranks masked positions for top-k style samplers",
    ),
    ComponentKind(
        "estimator",
        "Estimator",
        "check_estimator",
        "estimates the NELBO of a model on a clean batch (unbiased)",
    ),
    ComponentKind("tokenizer", "Tokenizer", "check_tokenizer", "text ↔ ids in [0, vocab_size)"),
    ComponentKind(
        "dataset", "Dataset", "check_dataset", "a text corpus with train / validation / test"
    ),
)

KIND: dict[str, ComponentKind] = {kind.name: kind for kind in COMPONENT_KINDS}
KINDS: tuple[str, ...] = tuple(KIND)
HOOK_FOR_KIND: dict[str, str] = {kind.name: kind.hook for kind in COMPONENT_KINDS}
