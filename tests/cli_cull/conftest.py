"""Fixtures for the culling commands: a private database and a scored synthetic shoot.

The shoot (14 small JPEGs) is generated and scored once per session with the 2-layer conformance
checkpoint (random weights), then every test gets its own copy of the files and a database that
already knows their content, so ``charm score`` on the copy reuses every score without loading
the model (about 0.1 s instead of 2 s per test).

What is in it (capture times from EXIF DateTimeOriginal + SubSecTimeOriginal unless noted):

* ``a0..a3``: one scene with a slight pan, 1.2 s apart (4.8 s in all: gaps chain);
* ``b0..b2``: another scene, 1 s apart, then ``c``: a *different* scene 1.5 s after ``b2``.
  Within --gap, so only the similarity threshold can split it off. With random weights every
  pair of photos has cosine ~0.97+, so the default 0.90 keeps ``c`` in the burst and the tests
  use 0.995 to show the split (near-identical frames stay above 0.999);
* ``m0..m2``: no EXIF date, one scene, file mtimes 0.5 s apart (the mtime fallback);
* ``s0..s2``: unrelated photos a minute apart (singletons).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cull_shoot import make_shoot
from scored_template import invoke, make_template, registered_copy

from shared_paths import conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    return conformance_model_args("--max-side", "256")


@pytest.fixture
def cli() -> Callable[..., object]:
    """``cli("groups", path, ...)`` → click Result with separate ``stdout`` and ``stderr``."""
    return invoke


@pytest.fixture(scope="session")
def template(tmp_path_factory, model_args) -> tuple[Path, Path]:
    """(pristine shoot, database holding its scores but no photo rows), made once per session."""
    return make_template(tmp_path_factory.mktemp("cull-shoot"), make_shoot, model_args)


@pytest.fixture
def shoot(tmp_path, template, _private_db, model_args) -> Path:
    """This test's copy of the scored shoot (mtimes kept: the m-burst is timed by them),
    registered in its private database."""
    root = tmp_path / "shoot"
    result = registered_copy(template, root, _private_db, model_args)
    assert "scored" not in {line.split('"status": "')[1].split('"')[0] for line in result.stdout.splitlines()}
    return root
