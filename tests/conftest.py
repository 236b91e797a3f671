"""Shared test fixtures: where ../shared lives, and small scorers built from it."""

from __future__ import annotations

import os

# The conformance fixtures were computed on an AMD EPYC CPU, where oneMKL (torch's CPU FFT) runs
# its generic DFT code path. On Intel CPUs MKL picks its AVX2 or AVX-512 DFT kernels instead, whose
# last bits differ: exact zeros (-inf metrics) come and go and now and then a kept cell changes,
# for the official package exactly as for charm. MKL_CBWR=COMPATIBLE selects that generic path
# on every x86 CPU; MKL reads it at its first call, so it is set before anything imports torch.
# Subprocesses inherit it. Production leaves MKL on AUTO (see the docstring of
# charmcli.model.charm.tokenizer.frequency_metric); tests/model/test_tokenizer.py checks that mode too.
os.environ["MKL_CBWR"] = "COMPATIBLE"

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from charmcli.cli import app

from shared_paths import CONFORMANCE, PHOTOS


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data sits beside the repository)")
    return path


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    return _require(CONFORMANCE)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return _require(PHOTOS)


# Hypothesis times each example (a 200 ms deadline) and the generation of its data: two wall
# clocks that a loaded or one-core machine trips. Property tests here check properties, not speed.
settings.register_profile("charm", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("charm")

#: The width every console in the tests renders at, whatever terminal (or none) pytest runs in.
#: Tests that read human output get this width; tests of the data read ``--json``.
TEST_COLUMNS = 120

#: Environment variables through which the caller's terminal would reach rich/click output.
_TERMINAL_VARS = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE",
                  "JUPYTER_COLUMNS", "JUPYTER_LINES")  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _fixed_terminal():
    """One fixed console geometry for every test, in-process and in child processes.

    Rich sizes a console from ``COLUMNS``/``LINES`` when its file is not a terminal (CliRunner's
    buffers, subprocess pipes) and from the real terminal otherwise, so without this a test
    would see 40 columns in one shell and 200 in another. Colour switches are dropped too, so
    the text a test reads carries no escape codes.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", str(TEST_COLUMNS))
        mp.setenv("LINES", "50")
        for name in _TERMINAL_VARS:
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Never touch the user's caches or the network: private HF and charm cache dirs, offline."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HF_HOME", str(root / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CHARM_CACHE_DIR", str(root / "charm-cache"))
    for name in ("CHARM_CHECKPOINT", "CHARM_POS_EMBED", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # a developer's own settings must not leak in


@pytest.fixture(autouse=True)
def _private_db(tmp_path):
    """Every test gets its own database (never the user's), via the same env var users have.

    A private MonkeyPatch, so a test calling ``monkeypatch.undo()`` cannot drop it; the data dir
    is redirected too, as a second guard for code paths that ignore ``CHARM_DB``.
    """
    db = tmp_path / "charm.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARM_DB", str(db))
        mp.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
        yield db


@pytest.fixture
def db(_private_db):
    return _private_db


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


def pytest_report_header(config) -> str:
    return f"MKL_CBWR={os.environ.get('MKL_CBWR')} (the fixture machine's FFT code path; see tests/conftest.py)"
