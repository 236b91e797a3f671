"""A small scored library for the taste CLI tests: 32 distinct JPEGs, scored once per session
with the 2-layer conformance checkpoint, then copied (photos and a scores-only database) per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from taste_library import make_library
from typer.testing import CliRunner

from charmcli.cli import app

from shared_paths import conformance_model_args


def _invoke(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    return conformance_model_args("--max-side", "256")


@pytest.fixture(scope="session")
def template(tmp_path_factory, model_args) -> tuple[Path, Path]:
    """(pristine photos, a database holding their scores but no photo rows)."""
    base = tmp_path_factory.mktemp("taste-library")
    src = make_library(base / "src")
    db = base / "template.db"
    env = {"CHARM_DB": str(db), "XDG_DATA_HOME": str(base / "xdg")}
    scratch = base / "scratch"
    shutil.copytree(src, scratch)
    result = _invoke("score", scratch, *model_args, "--quiet", env=env)
    assert result.exit_code == 0, result.stderr
    shutil.rmtree(scratch)
    assert _invoke("forget", "--json", env=env).exit_code == 0  # rows go; scores stay (by content)
    return src, db


@pytest.fixture
def cli() -> Callable[..., object]:
    return _invoke


@pytest.fixture
def library(tmp_path, template, _private_db, model_args) -> Path:
    """This test's copy of the library, registered in its private database (scores reused)."""
    src, db = template
    root = tmp_path / "library"
    shutil.copytree(src, root)
    shutil.copyfile(db, _private_db)
    result = _invoke("score", root, *model_args, "--quiet")
    assert result.exit_code == 0, result.stderr
    return root
