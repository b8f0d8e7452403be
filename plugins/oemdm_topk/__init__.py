"""Placeholder: scorers and the topk sampler arrive with the LoMDM issue."""
