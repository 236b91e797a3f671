"""Fixtures for the reliability tests: a private database, the 2-layer checkpoint, a CLI runner.

Helpers live in ``rel_helpers`` (a uniquely named module); nothing imports this file by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charmcli.cli import app

from shared_paths import PHOTOS, conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    """The small official-format checkpoint (random weights, deterministic, fast) on the CPU."""
    return conformance_model_args("--max-side", "256")


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
