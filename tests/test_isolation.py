"""The suite leaves nothing behind, and in CI it cannot pass by skipping (see tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from charmcli.model.registry import converted_cache_dir, hub_cache_dir
from charmcli.review.images import picture_cache_dir
from charmcli.store import default_db_path

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ["CHARM_TEST_RUN_DIR"])
REAL_HOME = Path(os.environ["CHARM_TEST_REAL_HOME"])
PROBES = Path(__file__).with_name("isolation_probes.py")


def _inside_run(path: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(RUN_DIR.resolve())


def test_every_place_a_library_writes_is_inside_this_run(monkeypatch):
    import platformdirs
    from ray._common.utils import get_default_ray_temp_dir

    monkeypatch.delenv("CHARM_DB")  # the database a user without CHARM_DB would get
    places = {
        "home": Path.home(), "~": os.path.expanduser("~"), "tempfile": tempfile.gettempdir(),
        "user_cache_dir": platformdirs.user_cache_dir("charm"), "user_data_dir": platformdirs.user_data_dir("charm"),
        "user_config_dir": platformdirs.user_config_dir("chromium"), "converted_cache_dir": converted_cache_dir(),
        "hub_cache_dir": hub_cache_dir(), "ray": get_default_ray_temp_dir(), "review cache": picture_cache_dir(),
        "database": default_db_path(),
    }  # fmt: skip
    outside = {k: str(v) for k, v in places.items() if not _inside_run(v)}
    assert not outside, outside
    # a child process (the CLI tests' subprocesses, Ray workers, Chromium) sees the same
    code = "import os, tempfile; print(os.path.expanduser('~')); print(tempfile.gettempdir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert all(_inside_run(p) for p in out), out


@pytest.mark.slow
def test_in_ci_a_skip_for_a_missing_tool_or_a_write_into_the_home_fails_the_run(tmp_path):
    """One child pytest with CI=true and an empty HOME, running two probes: one skips for a
    missing tool, one writes into the real home. Both fail the run, and the run itself (caches,
    Ray, Chromium...) wrote nothing else there."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true", "HOME": str(home)}
    ci = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PROBES)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ci.returncode == 1 and "1 failed, 1 passed" in ci.stdout, ci.stdout
    assert "CI=true: a test that cannot run is a failure here, not a skip: Skipped: probe: a tool is not installed" in ci.stdout
    assert f"FAILED: new in the real home {home}: .cache, .cache/charm-probe" in ci.stdout
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [".cache", ".cache/charm-probe"]
