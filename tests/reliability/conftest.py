"""Fixtures for the reliability tests: a private database, the 2-layer checkpoint, a CLI runner.

Helpers live in ``rel_helpers`` (a uniquely named module); nothing imports this file by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charmcli.cli import app

from shared_paths import CONFORMANCE, PHOTOS


@pytest.fixture(autouse=True)
def _private_db(tmp_path) -> Iterator[Path]:
    """Every test gets its own database (never the user's): ``CHARM_DB`` and the data dir too."""
    db = tmp_path / "charm.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARM_DB", str(db))
        mp.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
        yield db


@pytest.fixture
def db(_private_db) -> Path:
    return _private_db


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    """The small official-format checkpoint (random weights, deterministic, fast) on the CPU."""
    ckpt, pos = CONFORMANCE / "checkpoints" / "aadb_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file() or not pos.is_file():
        pytest.skip(f"{CONFORMANCE} is absent (the shared test data sits beside the repository)")
    return ["--checkpoint", str(ckpt), "--pos-embed", str(pos), "--device", "cpu", "--max-side", "256"]


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    if not (PHOTOS / "MANIFEST.tsv").is_file():
        pytest.skip(f"{PHOTOS} is absent (the shared test data sits beside the repository)")
    return PHOTOS


@pytest.fixture
def cli() -> Callable[..., object]:
    """``cli("score", path, ...)`` → click Result with separate ``stdout`` and ``stderr``."""
    runner = CliRunner()

    def invoke(*args: object, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
