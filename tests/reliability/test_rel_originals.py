"""Guarantee 1: charm never writes, moves, deletes, truncates or re-timestamps an original.

Two independent checks, every command:

* **before/after fingerprints** (size, mtime_ns, permission bits, sha256) of every input, plus
  the list of names in the input folder (nothing appears or vanishes there, except the XMP
  sidecars ``rate`` is asked to write);
* **a write guard** (:class:`rel_helpers.WriteGuard`): the inputs are also ``chmod a-w``, but root
  ignores that, so every in-process write path (``open`` for writing, ``os.open`` with a write
  flag, replace/rename/unlink/truncate/utime/chmod) is wrapped to refuse and record any attempt
  on an input, directly or through a hard link or symlink that ``top --export`` made.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from rel_helpers import WriteGuard, fingerprint, jsonl, make_photo, tree

from charmcli.cli import app
from charmcli.library.atomic import atomic_write_bytes

SHARED_PICKS = [
    "DSCN0010.jpg",  # camera JPEG with full EXIF
    "FujiFilm DS-7 (1).jpg",  # spaces and parentheses
    "exif_orientation/landscape_6.jpg",  # rotated by EXIF
    "chelsea_alpha_vignette.png",  # RGBA
    "Channel_digital_image_CMYK_color.jpg",  # CMYK + ICC
    "BSG1.tiff",  # LZW TIFF
    "bad/rotating-squares.gif",  # animated
    "bad/empty.jpg",  # fails: zero bytes
    "bad/truncated_image.png",  # fails: truncated
]
OLD_MTIME_NS = 1_400_000_000_123_456_789  # distinctive: any touch would change it


def _commands() -> set[str]:
    import typer.main

    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.fixture
def originals(tmp_path, shared_photos) -> tuple[Path, list[Path]]:
    """A library of copies of shared photos (good and bad) plus generated ones, all read-only."""
    root = tmp_path / "photos"
    files = []
    for name in SHARED_PICKS:
        dest = root / Path(name).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_photos / name, dest)
        files.append(dest)
    for i, date in enumerate(["2024:06:01 10:00:00", "2024:06:01 10:00:01", "2024:06:01 10:00:02"]):
        files.append(make_photo(root / "burst" / f"IMG_{i:04d}.JPG", seed=100 + i, date=date))
    files.append(make_photo(root / "burst" / "odd.png", seed=7, fmt="PNG"))
    for f in files:
        os.utime(f, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
        f.chmod(0o444)  # read-only: enforced for a normal user (root is caught by the guard)
    return root, files


def _read_only_dirs(root: Path, writable: bool) -> None:
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o755 if writable else 0o555)


def test_no_command_writes_an_original(cli, originals, model_args, tmp_path, monkeypatch):
    root, files = originals
    before, names = fingerprint(files), tree(root)
    guard = WriteGuard(files).install(monkeypatch)
    _read_only_dirs(root, writable=False)
    out = tmp_path / "out"

    def step(*args, expect=(0,), sidecars_ok=False):
        result = cli(*args)
        label = " ".join(str(a) for a in args[:3])
        assert result.exit_code in expect, f"{label}: exit {result.exit_code}\n{result.stderr}"
        assert "Traceback" not in result.stderr, label
        assert guard.violations == [], f"{label} tried to write an original: {guard.violations}"
        assert fingerprint(files) == before, f"{label} changed an original"
        now = tree(root)
        if sidecars_ok:
            now = [n for n in now if not n.lower().endswith(".xmp")]
        assert now == names, f"{label} added or removed files among the originals"
        return result

    first = step("score", root, *model_args, "--json", expect=(1,))  # the bad files fail
    assert {e["status"] for e in jsonl(first.stdout)} == {"scored", "error"}
    step("score", root, *model_args, expect=(0,))  # cached; known failures summed up, not retried
    step("score", root, *model_args, "--retry-failed", "--rescore", "--workers", "3", expect=(1,))
    for mode in ("--copy", "--link", "--symlink"):
        step("top", "5", "--export", out / mode.strip("-"), mode)
        assert len(list((out / mode.strip("-")).glob("0*"))) == 5
    step("top", "3", root / "burst", "--json")
    step("compare", root / "DSCN0010.jpg", root / "burst" / "odd.png", *model_args)
    step("compare", root / "burst" / "IMG_0000.JPG", root / "empty.jpg", *model_args, expect=(1,))
    step("show", root / "DSCN0010.jpg")
    step("show", root / "DSCN0010.jpg", "--explain", out / "explain.png")
    step("show", root / "empty.jpg", "--json", expect=(0, 1))
    step("stats")
    step("forget", "--dry-run")
    step("forget")
    commands = _commands()
    if "report" in commands:
        step("report", root, "--out", out / "report")
        assert (out / "report" / "index.html").is_file()
    if "rate" in commands:
        _read_only_dirs(root, writable=True)  # sidecars go beside the photos; the photos stay read-only
        step("rate", root, sidecars_ok=True)
        step("rate", root, "--sidecar", "adobe", sidecars_ok=True)
        assert list(root.rglob("*.xmp"))
    # The exports really are the originals' bytes (or links to them), and links still point home.
    assert all(os.path.samefile(p, os.readlink(p)) for p in (out / "symlink").glob("0*"))
    assert all(os.stat(p).st_nlink >= 2 for p in (out / "link").glob("0*"))
    if "rate" not in commands or "report" not in commands:
        pytest.skip("checked everything but `charm rate`/`charm report`, which this build does not have yet")


def test_explain_never_overwrites_the_photo_it_explains(cli, originals, model_args):
    """``show --explain`` writes a PNG; pointed at the photo itself it must refuse, not replace it."""
    root, _files = originals
    photo, other = root / "DSCN0010.jpg", root / "burst" / "odd.png"
    assert cli("score", photo, other, *model_args).exit_code == 0
    for f in (photo, other):
        f.chmod(0o644)  # even writable originals
    before = fingerprint([photo, other])
    for dest in (photo, other, root / "no-such-folder" / "x.png"):  # itself, another photo, nowhere
        result = cli("show", photo, "--explain", dest)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert fingerprint([photo, other]) == before
    assert cli("show", photo, "--explain", root / "new.png").exit_code == 0  # a fresh name is fine


def test_the_guard_catches_every_way_of_writing(tmp_path, monkeypatch):
    """The guard itself is tested: each of these writes to an original is refused and recorded."""
    src = make_photo(tmp_path / "in" / "a.jpg", seed=1)
    hard, soft = tmp_path / "hard.jpg", tmp_path / "soft.jpg"
    os.link(src, hard)
    os.symlink(src, soft)
    other = make_photo(tmp_path / "other.jpg", seed=2)
    before = fingerprint([src])
    guard = WriteGuard([src]).install(monkeypatch)

    from PIL import Image

    attempts = [
        lambda: open(src, "r+b").close(),
        lambda: src.write_bytes(b"x"),
        lambda: Image.new("RGB", (4, 4)).save(src),
        lambda: atomic_write_bytes(src, b"x"),  # temp file + os.replace over the original
        lambda: open(hard, "ab").close(),  # through a hard link (--link export)
        lambda: open(soft, "wb").close(),  # through a symlink (--symlink export)
        lambda: os.utime(src),
        lambda: os.chmod(soft, 0o600),
        lambda: os.unlink(src),
        lambda: os.rename(src, tmp_path / "moved.jpg"),
        lambda: shutil.copyfile(other, src),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError):
            attempt()
    assert len(guard.violations) == len(attempts)
    # Reading, and removing or replacing *links* to an original, are fine.
    guard.violations.clear()
    assert src.read_bytes() and soft.read_bytes()
    os.unlink(soft)
    os.replace(tmp_path / "hard.jpg", tmp_path / "hard2.jpg")
    assert guard.violations == []
    monkeypatch.undo()
    assert fingerprint([src]) == before
    assert stat.S_ISREG(os.lstat(src).st_mode)
