"""What structured fast paths require of an order and a backbone, stated once.

Each function returns the list of problems (empty: the requirement holds), each naming the
component and what would serve, for the caller to join into its one-line error.
"""

from __future__ import annotations

from oemdm_core.interfaces.backbone import Backbone
from oemdm_core.interfaces.order import Order


def left_to_right_problems(order: Order, backbone: Backbone, time_free: bool = True) -> list[str]:
    """Problems with "the left-to-right order on a causal backbone": a fixed order of block
    size 1 (`ar`) and `causal` attention, so that one pass over the clean x gives the logits
    of every position given its prefix; with `time_free`, a backbone that ignores t (the
    pass then serves every position's time at once)."""
    problems = []
    if order.learned or order.block_structure() != 1:
        problems.append(
            f"order '{order.name}' is not left-to-right (block structure "
            f"{order.block_structure()!r}; needs 1, e.g. order 'ar')"
        )
    if backbone.attention != "causal":
        problems.append(
            f"backbone '{backbone.name}' has {backbone.attention!r} attention; needs 'causal' "
            "(the logits at i read tokens < i)"
        )
    if time_free and backbone.uses_time:
        problems.append(f"backbone '{backbone.name}' is time-conditioned; needs one that ignores t")
    return problems


def block_order_size(order: Order) -> int | None:
    """The block size B' of a fixed left-to-right block order (`ar`: 1, `block`), else None."""
    return None if order.learned else order.block_structure()


def block_size_contradiction(order: Order, backbone: Backbone) -> str | None:
    """Why `order` and `backbone` disagree on the block size, or None.

    A model has one block size: the order's B' (`block_order_size`). Everything else that
    works in blocks derives it from the order (the block-vectorized estimator, the block
    sampler) or, being configured separately, must equal it: the block size of a
    `block_causal` backbone. A backbone's block size stands alone only with an order that
    has no block structure."""
    size = block_order_size(order)
    if size is None or backbone.attention != "block_causal" or backbone.block_size == size:
        return None
    return (
        f"backbone '{backbone.name}' block_size {backbone.block_size} contradicts order "
        f"'{order.name}' block size {size}; block_causal attention must use the order's block "
        f"size (set the backbone's block_size to {size})"
    )
