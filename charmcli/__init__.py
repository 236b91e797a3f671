"""charm: score, rank and cull a photo library with the Charm aesthetic model (CVPR 2025)."""

__version__ = "0.1.0"
