"""A small scored library for the taste CLI tests: 32 distinct JPEGs, scored once per session
with the 2-layer conformance checkpoint, then copied (photos and a scores-only database) per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from scored_template import invoke, make_template, registered_copy
from taste_library import make_library

from shared_paths import conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    return conformance_model_args("--max-side", "256")


@pytest.fixture(scope="session")
def template(tmp_path_factory, model_args) -> tuple[Path, Path]:
    return make_template(tmp_path_factory.mktemp("taste-library"), make_library, model_args)


@pytest.fixture
def cli() -> Callable[..., object]:
    return invoke


@pytest.fixture
def library(tmp_path, template, _private_db, model_args) -> Path:
    """This test's copy of the library, registered in its private database (scores reused)."""
    registered_copy(template, tmp_path / "library", _private_db, model_args)
    return tmp_path / "library"
