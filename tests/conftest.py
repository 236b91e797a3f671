"""Shared test fixtures: where ../shared lives, and small scorers built from it.

Also the run's own home: before anything is imported or any fixture (of any scope) runs, every
place a library would write into the user's home — ``HOME``, the XDG folders (platformdirs: charm's
database, picture and converted-checkpoint caches), the Hugging Face hub, Ray's temp and token
folders, Chromium's profile and crash folders, ``TMPDIR`` — points into one fresh folder of this run
(:data:`RUN_DIR`). It is removed when the run passes and kept (its path printed) when it fails. At
the end the real home is compared with a listing taken before: anything new there fails the run
in CI (and is a warning elsewhere, where other programs may be writing there meanwhile).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

#: This run's temporary tree: the fake home, caches, Ray's folder, TMPDIR (pytest's tmp_path too).
RUN_DIR = Path(tempfile.mkdtemp(prefix="charm-tests-"))
#: The home the developer (or CI) started pytest with; nothing in it may change.
REAL_HOME = Path(os.path.expanduser("~"))
_RUN_ENV = {
    "HOME": RUN_DIR / "home",
    "XDG_CACHE_HOME": RUN_DIR / "home" / ".cache",
    "XDG_CONFIG_HOME": RUN_DIR / "home" / ".config",
    "XDG_DATA_HOME": RUN_DIR / "home" / ".local" / "share",
    "XDG_STATE_HOME": RUN_DIR / "home" / ".local" / "state",
    "HF_HOME": RUN_DIR / "hf-home",
    "CHARM_CACHE_DIR": RUN_DIR / "charm-cache",
    "TORCHINDUCTOR_CACHE_DIR": RUN_DIR / "torchinductor",
    "RAY_TMPDIR": RUN_DIR / "r",  # short: Ray's socket paths must stay under 108 bytes
    "TMPDIR": RUN_DIR / "tmp",
}
for _name, _path in _RUN_ENV.items():
    _path.mkdir(parents=True, exist_ok=True)
    os.environ[_name] = str(_path)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["CHARM_TEST_RUN_DIR"], os.environ["CHARM_TEST_REAL_HOME"] = str(RUN_DIR), str(REAL_HOME)  # for tests
#: A developer's own settings that would send the tests to other files or to the network.
_DEVELOPER_VARS = ("CHARM_CHECKPOINT", "CHARM_POS_EMBED", "CHARM_DB", "CHARM_MODELS_DIR", "CHARM_PRECISION",
                   "HF_HUB_CACHE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "RAY_ADDRESS")  # fmt: skip
for _name in _DEVELOPER_VARS:
    os.environ.pop(_name, None)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
tempfile.tempdir = None  # recomputed from TMPDIR: pytest's own tmp_path tree lands in RUN_DIR too


def _home_listing() -> set[str]:
    """The real home's entries, and three levels of the folders where programs keep state."""
    found = {e.name for e in os.scandir(REAL_HOME)} if REAL_HOME.is_dir() else set()
    for hidden in (".cache", ".config", ".local"):
        for top, dirs, files in os.walk(REAL_HOME / hidden):
            rel = os.path.relpath(top, REAL_HOME)
            found.update(os.path.join(rel, n) for n in (*dirs, *files))
            if rel.count(os.sep) >= 2:
                dirs.clear()
    return found


_HOME_BEFORE = _home_listing()

# The conformance fixtures were computed on an AMD EPYC CPU, where oneMKL (torch's CPU FFT) runs
# its generic DFT code path. On Intel CPUs MKL picks its AVX2 or AVX-512 DFT kernels instead, whose
# last bits differ: exact zeros (-inf metrics) come and go and now and then a kept cell changes,
# for the official package exactly as for charm. MKL_CBWR=COMPATIBLE selects that generic path
# on every x86 CPU; MKL reads it at its first call, so it is set before anything imports torch.
# Subprocesses inherit it. Production leaves MKL on AUTO (see the docstring of
# charmcli.model.charm.tokenizer.frequency_metric); tests/model/test_tokenizer.py checks that mode too.
os.environ["MKL_CBWR"] = "COMPATIBLE"

from collections.abc import Callable

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


def pytest_report_header(config) -> list[str]:
    return [f"MKL_CBWR={os.environ.get('MKL_CBWR')} (the fixture machine's FFT code path; see tests/conftest.py)",
            f"home, caches, Ray and TMPDIR of this run: {RUN_DIR}"]  # fmt: skip


# -- in CI a missing tool or missing ../shared is a failure, not a skip ------------------------------

#: Skip reasons that mean "something this suite needs is not installed or not there".
_MISSING = re.compile(r"absent|not installed|not found|needs debian|could not import|no module named", re.I)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing_reason(report) -> str | None:
    if report.skipped and isinstance(report.longrepr, tuple) and _MISSING.search(str(report.longrepr[2])):
        return str(report.longrepr[2])
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    reason = _missing_reason(report)
    if reason and _in_ci():
        report.outcome = "failed"
        report.longrepr = f"CI=true: a test that cannot run is a failure here, not a skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    reason = _missing_reason(report)
    if reason and _in_ci():
        report.outcome = "failed"
        report.longrepr = f"CI=true: a module that cannot run is a failure here, not a skip: {reason}"


# -- nothing left behind ----------------------------------------------------------------------------


def pytest_sessionfinish(session, exitstatus) -> None:
    """The real home gained something: a failure in CI, a warning elsewhere (where other programs
    may write there meanwhile). A failed session keeps this run's tree (for a look at its files)."""
    added = sorted(_home_listing() - _HOME_BEFORE)
    if added:
        session.config.stash[_HOME_ADDED] = added
        if _in_ci():
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.exitstatus != pytest.ExitCode.OK:
        _KEEP.append(session.exitstatus)


_KEEP: list[int] = []  # the exit status of each failed session in this process (pytest.main can run twice)
_CREATOR = os.getpid()


@atexit.register
def _remove_run_dir() -> None:
    """At exit, not at session end: a tool may run pytest.main more than once in one process. A
    forked child (a Ray worker, a mutation-testing fork) leaves the tree to the process that made it."""
    if os.getpid() == _CREATOR and not _KEEP:
        shutil.rmtree(RUN_DIR, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    added = config.stash.get(_HOME_ADDED, None)
    if added:
        verdict = "FAILED" if _in_ci() else "warning (a failure in CI)"
        terminalreporter.write_line(f"{verdict}: new in the real home {REAL_HOME}: {', '.join(added)}", red=True)
    if _KEEP:
        terminalreporter.write_line(f"this run's home, caches and temporary files are kept in {RUN_DIR}")


_HOME_ADDED = pytest.StashKey[list]()
