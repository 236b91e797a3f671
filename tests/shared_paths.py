"""Where the shared test data lives (``../shared`` beside the repository)."""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"
PHOTOS = SHARED / "photos"
