"""The example scripts keep working (they are documentation that runs)."""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_score_folder_example(tmp_path, conformance_dir, photos_dir, monkeypatch, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("DSCN0010.jpg", "FujiFilm DS-7 (1).jpg"):
        shutil.copy2(photos_dir / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    monkeypatch.setattr(sys, "argv", [
        "score_folder.py", str(folder),
        "--checkpoint", str(conformance_dir / "checkpoints/aadb_charm.pth"),
        "--pos-embed", str(conformance_dir / "dino_small_pos.pt"),
    ])  # fmt: skip
    runpy.run_path(str(EXAMPLES / "score_folder.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "2 photos scored with aadb" in out
    assert "skipped" in out and "broken.jpg" in out
    assert "DSCN0010.jpg" in out and "FujiFilm DS-7 (1).jpg" in out
