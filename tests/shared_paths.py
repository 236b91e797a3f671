"""Where the shared test data lives (``../shared`` beside the repository)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"
PHOTOS = SHARED / "photos"


def conformance_model_args(*extra: str) -> list[str]:
    """CLI options scoring with the small official-format checkpoint (random weights, fast) on CPU."""
    ckpt, pos = CONFORMANCE / "checkpoints" / "aadb_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file() or not pos.is_file():
        pytest.skip(f"{CONFORMANCE} is absent (the shared test data sits beside the repository)")
    return ["--checkpoint", str(ckpt), "--pos-embed", str(pos), "--device", "cpu", *extra]
EAT_CONFORMANCE = SHARED / "eat_conformance"  # issue 13


def eat_fixture(variant: str = "ava") -> tuple[Path, Path]:
    """(checkpoint, arch config) of the small random-weight EAT fixtures; skips when absent."""
    ckpt = EAT_CONFORMANCE / "checkpoints" / f"eat_mini_{variant}_seed20230726.pth"
    config = EAT_CONFORMANCE / "configs" / f"eat_mini_{variant}.yaml"
    if not ckpt.is_file() or not config.is_file():
        pytest.skip(f"{EAT_CONFORMANCE} is absent (the shared test data sits beside the repository)")
    return ckpt, config
