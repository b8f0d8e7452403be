"""`oemdm sample CKPT`: draw samples from a trained checkpoint and print them as text.

Samples are drawn in batches of `--batch-size` and written (to stdout or `--output`) as each
batch finishes, so memory does not grow with `-n`; a progress bar goes to stderr. One
generator runs through all batches: the samples depend on the seed and the batch size.

`--show-order` adds, after each sample, its generation order: a header with the number of
steps the sample took (and the denoiser calls of its batch), then pairs of aligned lines,
`token` (each token as text, a space as ␣, escapes for other whitespace) and `step` (the
0-based step that generated it, `-` for prompt tokens), wrapped at 100 characters.
"""

from __future__ import annotations

import argparse
import sys

from oemdm_core.cli.args import add_sampler_arguments, positive_int
from oemdm_core.cli.eval import add_reverse_scheduler_argument
from oemdm_core.plugin.registry import Registry, resolve_registry

NAME = "sample"
HELP = "Draw samples from a checkpoint and print them as text."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Run directory or checkpoint directory.")
    parser.add_argument(
        "-n", "--num-samples", type=positive_int, default=4, help="Number of samples."
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="Samples drawn at once (memory grows with it, not with -n).",
    )
    add_sampler_arguments(parser)
    # the old spelling, which `train` and `config show` use for dotted config overrides
    parser.add_argument(
        "--set", dest="old_options", action="append", default=[], help=argparse.SUPPRESS
    )
    parser.add_argument("--length", type=positive_int, help="Sample length (default: the model's).")
    parser.add_argument("--prompt", default="", help="Text fixed at the start of every sample.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument("-o", "--output", metavar="FILE", help="Write the samples to FILE.")
    parser.add_argument(
        "--no-progress", action="store_true", help="Do not show a progress bar (on stderr)."
    )
    parser.add_argument(
        "--show-order",
        action="store_true",
        help="After each sample, print the step that generated each token and the step count.",
    )
    add_reverse_scheduler_argument(parser)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The ids of `prompt`; characters the tokenizer cannot represent (they would not
    decode back to themselves) raise `ConfigError` naming them."""
    from oemdm_core.errors import ConfigError

    ids = tokenizer.encode(prompt)
    if tokenizer.decode(ids) == prompt:
        return ids
    bad = sorted({c for c in prompt if tokenizer.decode(tokenizer.encode(c)) != c})
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:10]) + (" …" if len(bad) > 10 else "")
    raise ConfigError(
        f"--prompt: characters outside the tokenizer's vocabulary ({tokenizer.name}, "
        f"{tokenizer.vocab_size} ids): {shown or 'the prompt does not round-trip'}; "
        "remove or replace them"
    )


def order_text(pieces: list[str], order: list[int], nfe: int, width: int = 100) -> str:
    """The `--show-order` block of one sample (see module): `pieces` the tokens as text,
    `order` the step of each (−1 for prompt tokens), `nfe` the denoiser calls of the batch."""
    steps = max(order, default=-1) + 1
    cells = [
        (repr(p.replace(" ", "␣"))[1:-1] or "''", "-" if k < 0 else str(k))
        for p, k in zip(pieces, order, strict=True)
    ]
    lines = [f"order: {steps} steps ({nfe} denoiser calls for the batch)"]
    row: list[tuple[str, str]] = []

    def flush() -> None:
        sizes = [max(map(len, cell)) for cell in row]
        for label, column in (("token ", 0), ("step  ", 1)):
            text = " ".join(c[column].ljust(n) for c, n in zip(row, sizes, strict=True))
            lines.append((label + text).rstrip())

    used = 6
    for cell in cells:
        size = max(map(len, cell)) + 1
        if row and used + size > width:
            flush()
            row, used = [], 6
        row.append(cell)
        used += size
    if row:
        flush()
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    import torch

    from oemdm_core.cli.args import sampler_from_flags
    from oemdm_core.cli.eval import load, set_reverse_scheduler
    from oemdm_core.errors import warn_renamed

    registry = resolve_registry(registry)
    model, cfg, data, _ = load(args.checkpoint, registry, args.device)
    set_reverse_scheduler(model, args.reverse_scheduler)
    if args.old_options:
        warn_renamed("oemdm sample --set", "--sampler-set (the same KEY=VALUE)", stacklevel=2)
    sampler = sampler_from_flags(
        args.sampler,
        cfg.sampling.sampler,
        args.old_options + args.sampler_options,
        "--sampler-set",
        registry,
    )
    length = args.length or model.length
    if length > model.backbone.max_length:
        raise ValueError(
            f"--length {length} exceeds the model's maximum sequence length {model.backbone.max_length}"
        )
    sampler.check_model(model, length)
    fixed = None
    if args.prompt:
        ids = encode_prompt(data.tokenizer, args.prompt)
        if len(ids) > length:
            raise ValueError(f"--prompt is {len(ids)} tokens long, more than --length {length}")
        fixed = torch.tensor(ids, dtype=torch.long)
    g = torch.Generator(device=model.device).manual_seed(args.seed)
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.num_samples, desc="sample", unit="sample", dynamic_ncols=True)
    try:
        done = 0
        while done < args.num_samples:
            count = min(args.batch_size, args.num_samples - done)
            try:
                result = sampler.sample(model, count, length=length, generator=g, fixed=fixed)
            except (torch.OutOfMemoryError, MemoryError):
                raise ValueError(
                    f"out of memory drawing a batch of {count} samples of length {length} on "
                    f"{model.device} ({done} written); use a smaller --batch-size"
                ) from None
            for row, order in zip(result.tokens.cpu(), result.order.cpu(), strict=True):
                out.write(f"--- sample {done} ---\n{data.decode(row.tolist())}\n")
                if args.show_order:
                    pieces = [data.decode([i]) for i in row.tolist()]
                    out.write(order_text(pieces, order.tolist(), result.nfe))
                done += 1
            out.flush()
            del result
            if bar is not None:
                bar.update(count)
    finally:
        if bar is not None:
            bar.close()
        if out is not sys.stdout:
            out.close()
    return 0
