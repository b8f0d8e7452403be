"""Standard error of the generic single-draw NELBO estimate against the structured
estimators (teacher forcing for `ar`, block-vectorised for `block`) on a small case.

For each of `--sequences` random sequences, `--draws` single-draw estimates of L(x) per
estimator (one t and one z_t per draw); reports the mean over sequences of the standard
deviation over draws (the SE of one draw, nats per sequence) and the ratio generic /
structured. Teacher forcing is deterministic (SE 0).

    python benchmarks/estimator_se.py [--length 16] [--vocab 8] [--draws 256] [--sequences 16]
"""

from __future__ import annotations

import harness
import torch

from oemdm_core import OeMDM


def single_draw_se(
    model: OeMDM, estimator: str, x: torch.Tensor, draws: int
) -> tuple[float, float]:
    """(mean over sequences of the SD over draws, mean estimate), nats per sequence."""
    model.estimator = OeMDM.from_config(
        {**model.config(), "estimator": {"name": estimator}}
    ).estimator
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        totals = torch.stack(
            [model.nelbo(x, generator=g).total.double() for _ in range(draws)]
        )  # [draws, B]
    return float(totals.std(0).mean()), float(totals.mean())


def main(argv: list[str] | None = None) -> None:
    parser = harness.new_parser(__doc__)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--sequences", type=int, default=16)
    args = harness.parse(parser, argv)
    torch.manual_seed(0)
    x = torch.randint(0, args.vocab, (args.sequences, args.length))
    cases = [
        ("ar", {"name": "ar"}, {"attention": "causal"}, "teacher-forcing"),
        (
            f"block({args.block_size})",
            {"name": "block", "block_size": args.block_size},
            {"attention": "block_causal", "block_size": args.block_size},
            "block-vectorized",
        ),
    ]
    print(harness.run_header(__file__, argv))
    print(
        f"L={args.length} V={args.vocab}, {args.sequences} sequences x {args.draws} draws, "
        "untrained tiny transformer (seed 0)\n"
    )
    print(harness.table_head(["order", "estimator", "SE/draw (nats)", "mean (nats)", "ratio"]))
    for label, order, backbone, structured in cases:
        torch.manual_seed(0)
        model = OeMDM.from_config(
            {
                "vocab_size": args.vocab,
                "length": args.length,
                "backbone": {"name": "transformer", "preset": "tiny", **backbone},
                "order": order,
            }
        )
        se_g, mean_g = single_draw_se(model, "generic", x, args.draws)
        se_s, mean_s = single_draw_se(model, structured, x, args.draws)
        ratio = f"{se_g / se_s:.1f}x" if se_s > 0 else "inf (structured is exact)"
        print(harness.table_row([label, "generic", f"{se_g:.3f}", f"{mean_g:.3f}", ""]))
        print(harness.table_row([label, structured, f"{se_s:.3f}", f"{mean_s:.3f}", ratio]))


if __name__ == "__main__":
    main()
