"""CLI test fixtures: a private database, the 2-layer conformance checkpoint, small photo folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import make_photo

from shared_paths import conformance_model_args


@pytest.fixture(scope="session")
def model_args() -> list[str]:
    """Score with the small official-format checkpoint (random weights, deterministic, fast)."""
    return conformance_model_args()


@pytest.fixture
def library(tmp_path, shared_photos) -> Path:
    """Five generated photos with EXIF in two folders, plus three real ones from shared/photos."""
    root = tmp_path / "lib"
    make_photo(root / "2023" / "a.jpg", seed=1, date="2023:05:01 10:00:00", make="Canon", model="Canon EOS R5", lens="RF 50mm F1.8")
    make_photo(root / "2023" / "b.jpg", seed=2, date="2023:12:31 23:59:59", make="NIKON", model="D750")
    make_photo(root / "2024" / "c.jpg", seed=3, date="2024:01:01 00:00:00", make="Canon", model="EOS 5D")
    make_photo(root / "2024" / "d.jpg", seed=4, size=(64, 96))
    make_photo(root / "misc" / "e.jpg", seed=5, size=(120, 80))
    (root / "real").mkdir()
    for name in ("DSCN0010.jpg", "FujiFilm DS-7 (1).jpg", "exif_orientation/landscape_6.jpg"):
        shutil.copy2(shared_photos / name, root / "real" / Path(name).name)
    return root
