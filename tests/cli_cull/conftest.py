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

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from charmcli.cli import app

from shared_paths import CONFORMANCE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import make_photo

BURSTS = {
    "a": ["a0.jpg", "a1.jpg", "a2.jpg", "a3.jpg"],
    "b": ["b0.jpg", "b1.jpg", "b2.jpg", "c.jpg"],  # c joins at the default similarity
    "m": ["m0.jpg", "m1.jpg", "m2.jpg"],
}
SINGLES = ["s0.jpg", "s1.jpg", "s2.jpg"]
ALL = [n for names in BURSTS.values() for n in names] + SINGLES
STRICT = ["--similarity", "0.995"]  # splits c from the b burst (see the module docstring)
MTIME_BASE_NS = 1_700_000_000 * 10**9


def _scene(seed: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    r = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [(xx * r.uniform(0.5, 3) + r.uniform(0, 255)) % 256, (yy * r.uniform(0.5, 3) + r.uniform(0, 255)) % 256,
         ((xx + yy) * r.uniform(0.5, 2)) % 256], -1,
    )  # fmt: skip
    for _ in range(5):
        cx, cy, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(8, 30)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < rad**2] = r.uniform(0, 255, 3)
    return img


def make_frame(path: Path, scene: int, k: int, date: str | None = None, subsec: str | None = None) -> Path:
    """Frame ``k`` of a burst of ``scene``: the scene shifted by k pixels plus a little sensor noise."""
    img = np.roll(_scene(scene), k, axis=1) + np.random.default_rng(scene * 100 + k).normal(0, 3, (120, 160, 3))
    exif = Image.Exif()
    if date:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = date  # DateTimeOriginal
        if subsec:
            sub[0x9291] = subsec  # SubSecTimeOriginal
    Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(path, "JPEG", quality=92, exif=exif)
    return path


def make_shoot(root: Path) -> Path:
    root.mkdir(parents=True)
    for k in range(4):
        t = 1.2 * k
        make_frame(root / f"a{k}.jpg", 1, k, f"2024:06:01 10:00:{int(t):02d}", f"{round(t % 1 * 10)}")
    for k in range(3):
        make_frame(root / f"b{k}.jpg", 2, k, f"2024:06:01 10:00:{30 + k:02d}", "50")
    make_frame(root / "c.jpg", 3, 0, "2024:06:01 10:00:34", "00")
    for k in range(3):
        os.utime(make_frame(root / f"m{k}.jpg", 4, k), ns=(MTIME_BASE_NS, MTIME_BASE_NS + k * 500_000_000))
    for k in range(3):
        make_photo(root / f"s{k}.jpg", seed=20 + k, size=(160, 120), date=f"2024:06:01 11:{k:02d}:00")
    return root


@pytest.fixture(autouse=True)
def _private_db(tmp_path) -> Iterator[Path]:
    """Every test gets its own database (never the user's), as in tests/cli."""
    db = tmp_path / "charm.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARM_DB", str(db))
        mp.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
        yield db


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    ckpt, pos = CONFORMANCE / "checkpoints" / "aadb_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file() or not pos.is_file():
        pytest.skip(f"{CONFORMANCE} is absent (the shared test data sits beside the repository)")
    return ["--checkpoint", str(ckpt), "--pos-embed", str(pos), "--device", "cpu", "--max-side", "256"]


def _invoke(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture
def cli() -> Callable[..., object]:
    """``cli("groups", path, ...)`` → click Result with separate ``stdout`` and ``stderr``."""
    return _invoke


@pytest.fixture(scope="session")
def template(tmp_path_factory, model_args) -> tuple[Path, Path]:
    """(pristine shoot, database holding its scores but no photo rows), made once per session."""
    base = tmp_path_factory.mktemp("cull-shoot")
    src = make_shoot(base / "src")
    db = base / "template.db"
    env = {"CHARM_DB": str(db), "XDG_DATA_HOME": str(base / "xdg")}
    scratch = base / "scratch"
    shutil.copytree(src, scratch)
    result = _invoke("score", scratch, *model_args, "--quiet", env=env)
    assert result.exit_code == 0, result.stderr
    shutil.rmtree(scratch)
    assert _invoke("forget", "--json", env=env).exit_code == 0  # drops the rows; scores stay (by content)
    return src, db


@pytest.fixture
def shoot(tmp_path, template, _private_db, cli, model_args) -> Path:
    """This test's copy of the scored shoot (mtimes kept), registered in its private database."""
    src, db = template
    root = tmp_path / "shoot"
    shutil.copytree(src, root)  # copy2: keeps the mtimes the m-burst is timed by
    shutil.copyfile(db, _private_db)
    result = cli("score", root, *model_args, "--json")
    assert result.exit_code == 0, result.stderr
    assert "scored" not in {line.split('"status": "')[1].split('"')[0] for line in result.stdout.splitlines()}
    return root
