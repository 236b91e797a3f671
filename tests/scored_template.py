"""A scored test library made once per session and copied per test (several test folders use it).

Scoring even tiny photos loads a model (seconds); copying a database of scores does not. The
template database keeps the scores but no photo rows (scores are keyed by content), so
``charm score`` on each test's copy re-registers its paths and reuses every score (~0.1 s).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from typer.testing import CliRunner

from charmcli.cli import app


def invoke(*args: object, env: dict[str, str] | None = None):
    """``charm ARGS...`` in-process → click Result with separate ``stdout`` and ``stderr``."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def make_template(base: Path, make: Callable[[Path], Path], model_args: Sequence[str]) -> tuple[Path, Path]:
    """(pristine photos made by ``make``, a database holding their scores but no photo rows)."""
    src = make(base / "src")
    db = base / "template.db"
    env = {"CHARM_DB": str(db), "XDG_DATA_HOME": str(base / "xdg")}
    scratch = base / "scratch"
    shutil.copytree(src, scratch)
    result = invoke("score", scratch, *model_args, "--quiet", env=env)
    assert result.exit_code == 0, result.stderr
    shutil.rmtree(scratch)
    assert invoke("forget", "--json", env=env).exit_code == 0  # drops the rows; scores stay (by content)
    return src, db


def registered_copy(template: tuple[Path, Path], root: Path, private_db: Path, model_args: Sequence[str]):
    """Copy the photos to ``root`` (mtimes kept) and register them in ``private_db`` from the
    template's scores; returns the ``charm score --json`` result (every line should be cached)."""
    src, db = template
    shutil.copytree(src, root)  # copy2: keeps the mtimes
    shutil.copyfile(db, private_db)
    result = invoke("score", root, *model_args, "--json")
    assert result.exit_code == 0, result.stderr
    return result
