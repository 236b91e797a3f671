"""The one long-side rule that both decoding and the scorer apply (no torch, no Pillow).

It is the official para/spaq pre-resize: when the long side exceeds ``max_side``, both sides are
scaled by ``min(max_side / w, max_side / h)`` and truncated to integers. The official code then
crashes on a side that truncates to zero (a 5000x2 panorama strip at 1024 becomes 1024x0); charm
keeps at least one pixel per side instead, the only place where it departs from the rule.
"""

from __future__ import annotations


def long_side_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` after capping the long side at ``max_side`` (``0``/``None``: unchanged)."""
    if not max_side or max(width, height) <= max_side:
        return (width, height)
    r = min(max_side / width, max_side / height)
    return (max(1, int(width * r)), max(1, int(height * r)))
