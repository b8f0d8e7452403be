"""Look at a LoMDM's generation order: sample, then draw the order and the token priorities.

Trains nothing. Builds a `lomdm` model (tiny transformer, untrained) or loads one with
`--checkpoint DIR` (anything written by `OeMDM.save_pretrained`, e.g. by `oemdm train`),
draws samples with the `topk` sampler and the `plackett-luce` scorer (the learned order),
and writes into `--out`:

- `order.png`: position × step heatmap of the generation order over the samples;
- `priority.png` and `priority.html`: the first sample's tokens coloured by the forward
  exponents w^i(x) (higher w = generated earlier in expectation).

    python examples/inspect_order.py --out /tmp/order [--checkpoint DIR] [--samples 16]

Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from oemdm_core import OeMDM, registry
from oemdm_core.runtime.visualize import order_heatmap, token_priority_html, token_priority_png


def build_model(args: argparse.Namespace) -> OeMDM:
    if args.checkpoint:
        return OeMDM.from_pretrained(args.checkpoint)
    torch.manual_seed(args.seed)
    return OeMDM.from_config(
        {
            "vocab_size": args.vocab_size,
            "length": args.length,
            "backbone": {"name": "transformer", "preset": "tiny"},
            "order": {"name": "lomdm"},
            "schedule": {"name": "linear"},
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("inspect_order"), help="Output dir.")
    parser.add_argument("--checkpoint", help="Model directory from save_pretrained.")
    parser.add_argument("--samples", type=int, default=16, help="Number of samples.")
    parser.add_argument("--steps", type=int, default=16, help="Sampler steps T.")
    parser.add_argument("--length", type=int, default=32, help="L (new model only).")
    parser.add_argument("--vocab-size", type=int, default=16, help="V (new model only).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = build_model(args)
    if model.order.name not in ("lomdm", "genmd4"):
        print(f"note: order '{model.order.name}' is not learned; priorities are uniform")
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    sampler = registry.build("sampler", "topk", steps=args.steps, scorer="plackett-luce")
    result = sampler.sample(model, args.samples, model.length, generator=generator)

    with torch.no_grad():
        schedule = model.forward_schedule(result.tokens[:1])
        w = getattr(schedule, "w", None)  # learned orders expose their exponents
        if w is None:  # any other order: the velocity at t = 1/2 ranks positions alike
            w = schedule.velocity(torch.tensor([0.5]))
    tokens = [str(int(i)) for i in result.tokens[0]]

    args.out.mkdir(parents=True, exist_ok=True)
    order_heatmap(result.order, args.out / "order.png")
    token_priority_png(tokens, w[0], args.out / "priority.png")
    token_priority_html(tokens, w[0], args.out / "priority.html")
    print(f"first sample: {' '.join(tokens)}")
    print(f"its order:    {' '.join(str(int(s)) for s in result.order[0])}")
    print(f"w range:      [{float(w.min()):.3f}, {float(w.max()):.3f}]")
    print(
        f"wrote {args.out / 'order.png'}, {args.out / 'priority.png'}, {args.out / 'priority.html'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
