"""lm-evaluation-harness adapter: the `oemdm` model of lm-eval (needs the `lm-eval` extra).

lm-eval 0.4.13 finds models only in its own registry (`lm_eval.api.registry.model_registry`,
filled by `lm_eval.models` and by `@register_model` in modules that have been imported); it
reads no entry points, plugin variable or `module:Class` names. So the plain `lm_eval`
command cannot see an outside model, and oemdm offers two routes that register it first:

    oemdm-lm-eval --model oemdm --model_args pretrained=RUN_DIR --tasks TASK ...
    python -m oemdm_core.integrations.lm_eval --model oemdm --model_args pretrained=RUN_DIR ...

(the `lm_eval` command line unchanged, with `--device cpu` unless a device is given), or, in
Python, `register()` and then `lm_eval.simple_evaluate(model="oemdm", ...)`.
"""

from __future__ import annotations

import sys

MODEL_NAME = "oemdm"
MODEL_TARGET = "oemdm_core.integrations.lm_eval.model:OeMDMLM"
SUBCOMMANDS_WITHOUT_MODEL = ("ls", "validate")


def register() -> None:
    """Register `oemdm` in lm-eval's model registry (idempotent). The adapter module is
    imported only when lm-eval builds the model."""
    # lm-eval's own models first: `get_model` imports them only while its registry is empty.
    import lm_eval.models  # noqa: F401
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def with_cpu_default(args: list[str]) -> list[str]:
    """`args` with `--device cpu` appended to an evaluation run that names no device
    (lm-eval's own default is cuda:0; `device=` in model_args still wins over it)."""
    if any(a == "--device" or a.startswith("--device=") for a in args):
        return args
    # One argument is a help request or `run` alone (lm-eval prints help); with more and no
    # subcommand, lm-eval inserts `run`.
    if len(args) < 2 or args[0] in (*SUBCOMMANDS_WITHOUT_MODEL, "-h", "--help"):
        return args
    return [*args, "--device", "cpu"]


def main(argv: list[str] | None = None) -> None:
    """The `lm_eval` command line with the `oemdm` model registered."""
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        sys.exit("oemdm-lm-eval: error: lm-eval is not installed; pip install 'oemdm[lm-eval]'")
    from oemdm_core.errors import OeMDMError

    register()
    args = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0], *with_cpu_default(args)]
    try:
        cli_evaluate()
    except OeMDMError as exc:  # bad model_args, a missing run: one line, no traceback
        sys.exit(f"oemdm-lm-eval: error: {exc}")
