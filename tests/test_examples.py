"""The example scripts keep working (they are documentation that runs)."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import sys
from pathlib import Path

from PIL import Image

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


def _run_example(argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["score_folder.py", *argv])
    runpy.run_path(str(EXAMPLES / "score_folder.py"), run_name="__main__")
    return capsys.readouterr().out


def test_score_folder_names_photos_inside_the_folder_it_was_given(tmp_path, conformance_dir, photos_dir,
                                                                   monkeypatch, capsys):  # fmt: skip
    folder = tmp_path / "Photos"
    (folder / "trip").mkdir(parents=True)
    shutil.copy2(photos_dir / "DSCN0010.jpg", folder / "trip" / "DSCN0010.jpg")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = _run_example(["../Photos", "--checkpoint", str(conformance_dir / "checkpoints/aadb_charm.pth"),
                        "--pos-embed", str(conformance_dir / "dino_small_pos.pt")], monkeypatch, capsys)  # fmt: skip
    assert "1 photos scored" in out
    assert "skipped broken.jpg:" in out
    assert f"  {Path('trip', 'DSCN0010.jpg')}  (" in out
    assert f"..{os.sep}" not in out


def test_score_folder_takes_the_max_pixels_its_messages_suggest(tmp_path, conformance_dir, photos_dir,
                                                                monkeypatch, capsys):  # fmt: skip
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy2(photos_dir / "DSCN0010.jpg", folder / "DSCN0010.jpg")  # 640x480
    model = ["--checkpoint", str(conformance_dir / "checkpoints/aadb_charm.pth"),
             "--pos-embed", str(conformance_dir / "dino_small_pos.pt")]  # fmt: skip
    out = _run_example([str(folder), *model, "--max-pixels", "100000"], monkeypatch, capsys)
    assert "0 photos scored" in out
    suggested = re.search(r"--max-pixels (\d+)", out)
    assert suggested is not None, out
    out = _run_example([str(folder), *model, "--max-pixels", suggested.group(1)], monkeypatch, capsys)
    assert "1 photos scored" in out


def test_the_python_api_page_followed_literally_scores_as_the_cli(cli, conformance_dir, photos_dir, tmp_path):
    """docs/python-api.md's snippet, run as written (the hub model swapped for local files), gives
    the score `charm score` stores for a 3264x2448 photo, not the native-resolution one."""
    from charmcli.model import Scorer

    photo = photos_dir / "jolla.jpg"
    ckpt, pos = conformance_dir / "checkpoints/aadb_charm.pth", conformance_dir / "dino_small_pos.pt"
    page = (EXAMPLES.parent / "docs" / "python-api.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", page, re.S)
    assert code is not None
    snippet = code.group(1).replace('"photo.jpg"', repr(str(photo)))
    assert 'Scorer.from_pretrained("aadb")' in snippet
    assert 'precision="auto"' in page  # the page says how to get the CLI's default number format
    scorer = Scorer.from_files(ckpt, pos, device="cpu")
    namespace: dict = {}
    real = Scorer.from_pretrained
    try:
        Scorer.from_pretrained = classmethod(lambda cls, *a, **k: scorer)  # type: ignore[method-assign]
        exec(compile(snippet, "python-api.md", "exec"), namespace)
    finally:
        Scorer.from_pretrained = real  # type: ignore[method-assign]
    result = cli("score", str(photo), "--checkpoint", str(ckpt), "--pos-embed", str(pos), "--device", "cpu",
                 "--precision", "fp32", "--json", "--db", str(tmp_path / "charm.db"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    cli_score = json.loads(result.stdout.splitlines()[0])["score"]
    assert namespace["result"].score == cli_score
    native = scorer.score(Image.open(photo).convert("RGB")).score
    assert native != cli_score  # the photo really is scored differently at its native size
