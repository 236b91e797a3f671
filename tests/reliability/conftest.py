"""Fixtures for the reliability tests: a private database, the 2-layer checkpoint, a CLI runner.

Helpers live in ``rel_helpers`` (a uniquely named module); nothing imports this file by name.
"""

from __future__ import annotations

import pytest

from shared_paths import conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    """The small official-format checkpoint (random weights, deterministic, fast) on the CPU."""
    return conformance_model_args("--max-side", "256")
