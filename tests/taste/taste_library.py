"""The taste tests' library: distinct small JPEGs (a uniquely named module; ``conftest`` is ambiguous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

N_PHOTOS = 32


def make_library(root: Path) -> Path:
    """Photos of coloured blocks, each with its own palette and brightness (distinct features)."""
    root.mkdir(parents=True)
    for i in range(N_PHOTOS):
        rng = np.random.default_rng(i)
        blocks = rng.integers(0, 256, (6, 8, 3)) * (0.3 + 0.7 * i / N_PHOTOS)
        pixels = np.kron(blocks, np.ones((12, 12, 1))).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"p{i:02d}.jpg", quality=92)
    return root
