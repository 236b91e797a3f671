"""Probe tests run only by tests/test_isolation.py, in a child pytest (not collected by the suite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_probe_missing_tool():
    pytest.skip("probe: a tool is not installed")


def test_probe_writes_into_the_real_home():
    (Path(os.environ["CHARM_TEST_REAL_HOME"]) / ".cache" / "charm-probe").mkdir(parents=True)
