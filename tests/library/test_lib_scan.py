"""scan.py: a walk that never opens files, never loops, and never stops on a problem."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from charmcli.library import scan
from charmcli.library.decode import load_image
from charmcli.library.scan import SUPPORTED_EXTENSIONS, ScanEntry, ScanProblem, display_path, iter_files


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _walk(*paths) -> tuple[list[ScanEntry], list[ScanProblem]]:
    found = list(iter_files(paths))
    entries = [f for f in found if isinstance(f, ScanEntry)]
    problems = [f for f in found if isinstance(f, ScanProblem)]
    assert len(entries) + len(problems) == len(found)
    return entries, problems


def _names(entries: list[ScanEntry], root: Path) -> list[str]:
    return [str(e.path.relative_to(root)) for e in entries]


def _run_with_timeout(func, seconds: float = 20.0):
    """Run ``func`` in a thread: a walker that opened a FIFO or looped would never return."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", func()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "scan did not finish (blocked on a FIFO or looping?)"
    return box["value"]


def test_extensions_hidden_and_junk(tmp_path: Path) -> None:
    for name in [
        "b.JPG",
        "a.jpeg",
        "c.Png",
        "sub/d.heic",
        "sub/e.CR3",
        "notes.txt",
        "video.mov",
        ".hidden.jpg",
        ".hiddendir/f.jpg",
        "@eaDir/g.jpg",
        "__MACOSX/h.jpg",
        "sub/.thumbnails/i.jpg",
    ]:
        _touch(tmp_path / name)
    entries, problems = _walk(tmp_path)
    assert problems == []
    assert _names(entries, tmp_path) == ["a.jpeg", "b.JPG", "c.Png", "sub/d.heic", "sub/e.CR3"]
    for entry in entries:
        st = os.stat(entry.path)
        assert entry.path.is_absolute()
        assert (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_explicit_files_bypass_the_skip_rules(tmp_path: Path) -> None:
    hidden = _touch(tmp_path / ".hidden.jpg")
    junk = _touch(tmp_path / "@eaDir" / "x.jpg")
    text = _touch(tmp_path / "notes.txt")
    entries, problems = _walk(hidden, junk, text)
    assert [e.path for e in entries] == [hidden, junk]
    assert [p.path for p in problems] == [text] and "unsupported" in problems[0].reason


def test_supported_extensions_cover_the_brief() -> None:
    for ext in [
        "jpg",
        "jpeg",
        "jpe",
        "png",
        "webp",
        "tif",
        "tiff",
        "bmp",
        "gif",
        "heic",
        "heif",
        "avif",
        "dng",
        "cr2",
        "cr3",
        "nef",
        "arw",
        "orf",
        "rw2",
        "raf",
        "pef",
        "srw",
    ]:
        assert "." + ext in SUPPORTED_EXTENSIONS
        assert scan.is_supported("X." + ext.upper())


def test_order_is_deterministic_and_paths_not_resolved(tmp_path: Path, monkeypatch) -> None:
    for name in ["z.jpg", "a/b.jpg", "A.jpg", "a.jpg", "m/n/o.png"]:
        _touch(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    first = [e.path for e in _walk(".")[0]]
    second = [e.path for e in _walk(tmp_path)[0]]
    assert first == second
    assert [str(p.relative_to(tmp_path)) for p in first] == [
        "A.jpg",
        "a/b.jpg",
        "a.jpg",
        "m/n/o.png",
        "z.jpg",
    ]


def test_symlink_loops_terminate_and_files_come_once(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _touch(photos / "a.jpg")
    _touch(photos / "sub" / "b.jpg")
    os.symlink("..", photos / "loop")  # photos/loop -> tmp_path (contains photos)
    os.symlink("..", photos / "sub" / "up")  # sub/up -> photos
    os.symlink("../..", photos / "sub" / "upup")
    entries, problems = _run_with_timeout(lambda: _walk(photos))
    real = sorted(os.path.realpath(e.path) for e in entries)
    assert real == sorted(os.path.realpath(p) for p in [photos / "a.jpg", photos / "sub" / "b.jpg"])
    assert any("symlink loop" in p.reason for p in problems)


def test_symlinked_folder_and_file_yield_each_real_file_once(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _touch(real / "x.jpg")
    lib = tmp_path / "lib"
    lib.mkdir()
    os.symlink(real, lib / "linked")  # folder symlink
    os.symlink(real / "x.jpg", lib / "alias.jpg")  # file symlink
    os.link(real / "x.jpg", lib / "hard.jpg")  # hard link: same inode
    entries, problems = _walk(lib, real)
    assert problems == []
    assert len(entries) == 1
    # Found first (sorted) under its link name, and the path is NOT resolved.
    assert entries[0].path == lib / "alias.jpg"


def test_dangling_symlink_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    _touch(tmp_path / "ok.jpg")
    os.symlink("nowhere.jpg", tmp_path / "dangling.jpg")
    os.symlink("self.jpg", tmp_path / "self.jpg")
    entries, problems = _walk(tmp_path, tmp_path / "missing-folder")
    assert _names(entries, tmp_path) == ["ok.jpg"]
    reasons = {p.path.name: p.reason for p in problems}
    assert reasons["dangling.jpg"].startswith("dangling symlink")
    assert "loop" in reasons["self.jpg"]
    assert reasons["missing-folder"] == "no such file or directory"
    assert all("\n" not in r for r in reasons.values())


def test_fifo_is_never_opened(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "x.jpg")
    os.mkfifo(tmp_path / "pipe")  # no photo extension: ignored silently
    entries, problems = _run_with_timeout(lambda: _walk(tmp_path, tmp_path / "x.jpg"))
    assert _names(entries, tmp_path) == ["a.jpg"]
    assert [p.path.name for p in problems] == ["x.jpg", "x.jpg"]
    assert all("not a regular file (FIFO)" in p.reason for p in problems)


def test_unlistable_folder_is_reported_and_walk_goes_on(tmp_path: Path, monkeypatch) -> None:
    _touch(tmp_path / "a" / "1.jpg")
    _touch(tmp_path / "locked" / "2.jpg")
    _touch(tmp_path / "z" / "3.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(scan.os, "scandir", scandir)
    entries, problems = _walk(tmp_path)
    assert _names(entries, tmp_path) == ["a/1.jpg", "z/3.jpg"]
    assert [(p.path.name, p.reason) for p in problems] == [
        ("locked", "cannot list folder: Permission denied")
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root from reading")
def test_real_permission_denied_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "locked" / "2.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        entries, problems = _walk(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert entries == [] and "Permission denied" in problems[0].reason


def test_unreadable_file_is_listed_then_fails_cleanly_at_decode(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    entries, _ = _walk(tmp_path)
    assert [e.path for e in entries] == [path]  # the walk stats, it does not open
    if os.geteuid() == 0:
        return  # root reads mode-000 files: nothing more to check here
    with pytest.raises(Exception, match="Permission denied"):
        load_image(path)


def test_non_utf8_names_work_end_to_end(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    folder = os.path.join(root, b"dossier-\xe9t\xe9")
    os.mkdir(folder)
    raw_name = os.path.join(folder, b"caf\xe9 \xff.jpg")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(os.fsdecode(raw_name), "JPEG")
    entries, problems = _walk(tmp_path)
    assert problems == [] and len(entries) == 1
    path = entries[0].path
    assert os.fsencode(path) == raw_name
    text = display_path(path)
    text.encode("ascii", "strict")  # printable anywhere, no surrogates
    assert text.endswith("dossier-\\xe9t\\xe9/caf\\xe9 \\xff.jpg")
    assert load_image(path).image.size == (8, 8)


def test_display_path_keeps_one_line() -> None:
    assert display_path(Path("a\nb.jpg")) == "a\\nb.jpg"
    assert display_path("plain/été.jpg") == "plain/été.jpg"
    assert display_path(b"x\xff.jpg") == "x\\xff.jpg"


def test_very_long_paths(tmp_path: Path) -> None:
    """Deep trees work up to PATH_MAX; beyond it the folder is reported, not crashed on."""
    component = "d" * 200
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for depth in range(1, 26):  # ~5000 characters: past Linux PATH_MAX (4096)
            os.mkdir(component, dir_fd=fd)
            child = os.open(component, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
            if depth in (5, 25):
                os.close(os.open(f"photo{depth}.jpg", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    entries, problems = _run_with_timeout(lambda: _walk(tmp_path))
    assert [e.path.name for e in entries] == ["photo5.jpg"]
    assert len(str(entries[0].path)) > 1000
    assert problems and all("too long" in p.reason.lower() for p in problems)


def test_shared_photo_set_is_found(shared_photos: Path, manifest: dict) -> None:
    entries, problems = _walk(shared_photos)
    found = {str(e.path.relative_to(shared_photos)) for e in entries}
    expected = {rel for rel in manifest if scan.is_supported(rel)}
    assert found == expected and problems == []
    assert "bad/chelsea.jxl" in found  # JPEG XL is a photo: scored with the plugin, else named as missing it


def test_bytes_paths_are_accepted(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    entries, problems = _walk(os.fsencode(tmp_path))
    assert [e.path.name for e in entries] == ["a.jpg"] and problems == []


def test_library_never_imports_torch() -> None:
    """Architecture rule: the library side hands PIL images over and knows nothing of tensors."""
    import subprocess
    import sys

    code = (
        "import sys, charmcli.library.scan, charmcli.library.decode, charmcli.library.metadata, "
        "charmcli.library.export, charmcli.library.atomic; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
