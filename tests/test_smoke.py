"""End-to-end smoke test of the public contract in DESIGN section 5."""

from __future__ import annotations

import torch

from oemdm_core import OeMDM, registry


def test_design_contract_roundtrip(tmp_path, generator):
    assert {"ar", "block", "lomdm", "mdm"} - set(registry.available("order")) <= {"lomdm"}
    model = OeMDM.from_config(
        {
            "vocab_size": 3,
            "length": 4,
            "backbone": {"name": "transformer", "preset": "tiny"},
            "order": {"name": "block", "block_size": 2},
            "schedule": {"name": "linear"},
        }
    )
    x = torch.randint(0, 3, (6, 4), generator=generator)
    terms = model.nelbo(x, generator=generator)
    assert terms.total.shape == (6,)
    torch.testing.assert_close(terms.total, terms.reconstruction + terms.velocity_matching)
    out = model.denoise(x, torch.full((6,), 0.5))
    assert out.logits.shape == (6, 4, 3) and out.hidden.shape[:2] == (6, 4)
    fs = model.forward_schedule(x)
    assert fs.alpha(torch.full((6,), 0.3)).shape == (6, 4)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = OeMDM.from_pretrained(tmp_path / "ckpt")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    sampler = registry.build("sampler", "ancestral", steps=8)
    result = sampler.sample(model, num_samples=2, length=4, generator=generator)
    assert result.tokens.shape == (2, 4) and result.order.shape == (2, 4)
    assert int(result.tokens.max()) < 3
