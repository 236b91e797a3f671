"""Fixtures for the library tests: the shared photo set (read-only) and its MANIFEST rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

SHARED_PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "photos"


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """``../shared/photos`` beside the repository; tests needing it skip when it is absent."""
    if not (SHARED_PHOTOS / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared test photos not found at {SHARED_PHOTOS} (they sit beside the repository)")
    return SHARED_PHOTOS


@pytest.fixture(scope="session")
def manifest(shared_photos: Path) -> dict[str, dict[str, str]]:
    """MANIFEST.tsv rows keyed by relative file name: expectations come from the data's own notes."""
    with open(shared_photos / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
