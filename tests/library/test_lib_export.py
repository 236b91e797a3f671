"""export.py / atomic.py: never overwrite, never leave half a file, never touch the originals."""

from __future__ import annotations

import builtins
import csv
import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from charmcli.library import atomic, export
from charmcli.library.atomic import PARTIAL_SUFFIX, atomic_write_bytes, atomic_write_text
from charmcli.library.export import ExportError, ExportItem, export_files


def _photo(path: Path, colour=(200, 30, 30), size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))  # a distinctive old mtime
    return path


def _fingerprint(path: Path) -> tuple:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.DictReader(fh))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    # Two different photos with the same name in different folders (every camera has IMG_0001).
    return [
        _photo(tmp_path / "src" / "a" / "IMG_0001.JPG", (200, 30, 30)),
        _photo(tmp_path / "src" / "b" / "IMG_0001.JPG", (30, 200, 30)),
        _photo(tmp_path / "src" / "b" / "beach.jpg", (30, 30, 200)),
    ]


def _items(sources: list[Path]) -> list[ExportItem]:
    return [
        ExportItem(src, rank, 9.5 - rank, {"model": "aadb", "date_taken": f"2024-01-0{rank}"})
        for rank, src in enumerate(sources, start=1)
    ]


@pytest.mark.parametrize("mode", ["copy", "link", "symlink"])
def test_originals_are_untouched(tmp_path: Path, sources: list[Path], mode: str, monkeypatch) -> None:
    before = {src: _fingerprint(src) for src in sources}
    real_open = builtins.open
    source_set = {os.path.realpath(s) for s in sources}

    def guarded_open(file, mode_="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike) and os.path.realpath(file) in source_set:
            assert not set(mode_) & set("wax+"), f"source opened for writing: {file} {mode_}"
        return real_open(file, mode_, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    results = export_files(_items(sources), tmp_path / "out", mode)
    monkeypatch.undo()

    assert all(r.ok for r in results), [r.error for r in results]
    assert {src: _fingerprint(src) for src in sources} == before
    for result in results:
        exported = result.path
        assert exported.read_bytes() == result.item.source.read_bytes()
        if mode == "copy":
            assert (
                not exported.is_symlink() and os.stat(exported).st_ino != os.stat(result.item.source).st_ino
            )
            assert os.stat(exported).st_mtime_ns == os.stat(result.item.source).st_mtime_ns  # copy2 semantics
        elif mode == "link":
            assert os.stat(exported).st_ino == os.stat(result.item.source).st_ino
        else:
            assert exported.is_symlink() and os.path.isabs(os.readlink(exported))
    assert _leftovers(tmp_path / "out") == []


def test_shared_photos_exported_by_copy_stay_intact(
    shared_photos: Path, manifest: dict, tmp_path: Path
) -> None:
    names = ["DSCN0010.jpg", "FujiFilm DS-7 (1).jpg"]
    before = {n: _fingerprint(shared_photos / n) for n in names}
    items = [ExportItem(shared_photos / n, i, 5.0) for i, n in enumerate(names, 1)]
    results = export_files(items, tmp_path / "best", "copy")
    assert [r.path.name for r in results] == ["0001_DSCN0010.jpg", "0002_FujiFilm DS-7 (1).jpg"]
    for n, result in zip(names, results, strict=True):
        assert _fingerprint(shared_photos / n) == before[n]
        assert hashlib.sha256(result.path.read_bytes()).hexdigest() == manifest[n]["sha256"]


def test_names_ranks_and_collisions(tmp_path: Path, sources: list[Path]) -> None:
    out = tmp_path / "out"
    first = export_files(_items(sources), out, "copy")
    assert [r.path.name for r in first] == ["0001_IMG_0001.JPG", "0002_IMG_0001.JPG", "0003_beach.jpg"]
    # Exporting in another mode into the same folder never overwrites: -2 names; charm's own
    # manifest.csv now describes the latest export.
    (out / "0003_beach-2.jpg").write_bytes(b"someone else's file")
    second = export_files(_items(sources), out, "symlink")
    assert [r.path.name for r in second] == ["0001_IMG_0001-2.JPG", "0002_IMG_0001-2.JPG", "0003_beach-3.jpg"]
    assert not any(r.kept for r in second)
    assert (out / "0003_beach-2.jpg").read_bytes() == b"someone else's file"
    assert first.manifest == out / "manifest.csv" and second.manifest == out / "manifest.csv"
    assert [r["exported"] for r in _manifest_rows(out / "manifest.csv")] == [r.path.name for r in second]
    # The same export again keeps every file where it is.
    third = export_files(_items(sources), out, "symlink")
    assert [r.path for r in third] == [r.path for r in second] and all(r.kept for r in third)
    assert not (out / "manifest-2.csv").exists()
    # Without rank prefixes, same-named sources get -2.
    plain = export_files(_items(sources), tmp_path / "plain", "copy", rank_prefix=False)
    assert [r.path.name for r in plain] == ["IMG_0001.JPG", "IMG_0001-2.JPG", "beach.jpg"]


def test_rank_width_grows_with_many_items(tmp_path: Path, sources: list[Path]) -> None:
    results = export_files([ExportItem(sources[0], 12345, 1.0)], tmp_path / "out", "symlink")
    assert results[0].path.name == "12345_IMG_0001.JPG"


def test_manifest_columns(tmp_path: Path, sources: list[Path]) -> None:
    missing = tmp_path / "src" / "gone.jpg"
    items = [*_items(sources), ExportItem(missing, 4, 1.25, {"note": "x"})]
    results = export_files(items, tmp_path / "out", "copy")
    assert [r.ok for r in results] == [True, True, True, False]
    assert "No such file" in results[3].error and "\n" not in results[3].error
    rows = _manifest_rows(results.manifest)
    assert list(rows[0]) == ["rank", "score", "source", "exported", "error", "model", "date_taken", "note"]
    assert rows[0]["rank"] == "1" and float(rows[0]["score"]) == 8.5
    assert rows[0]["source"] == str(sources[0]) and rows[0]["exported"] == "0001_IMG_0001.JPG"
    assert rows[3]["exported"] == "" and rows[3]["error"] and rows[3]["note"] == "x"
    assert rows[0]["note"] == ""


def test_interrupted_copy_leaves_no_partial_file(tmp_path: Path, sources: list[Path], monkeypatch) -> None:
    """A copy dying halfway (disk full, Ctrl-C) leaves nothing under a final name, nor a temp file."""
    real_copyfile = shutil.copyfile

    def half_then_fail(src, dst, *args, **kwargs):
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read()[:100])
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    out = tmp_path / "out"
    monkeypatch.setattr(export.shutil, "copyfile", half_then_fail)
    results = export_files(_items(sources), out, "copy")
    assert [r.ok for r in results] == [False, False, False]
    assert all("No space left on device" in r.error for r in results)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]

    def interrupt(src, dst, *args, **kwargs):
        real_copyfile(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(export.shutil, "copyfile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_files(_items(sources), tmp_path / "out2", "copy")
    assert list((tmp_path / "out2").iterdir()) == []
    monkeypatch.undo()
    assert all(_fingerprint(s)[0] > 0 for s in sources)


def test_cross_device_hard_link_is_a_clear_error(tmp_path: Path, sources: list[Path], monkeypatch) -> None:
    def exdev(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))

    monkeypatch.setattr(export.os, "link", exdev)
    results = export_files(_items(sources), tmp_path / "out", "link", manifest=False)  # os.link is global
    assert all(
        r.error == "cannot hard-link across filesystems; use --copy or --symlink" for r in results
    )


def test_destination_problems(tmp_path: Path, sources: list[Path]) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ExportError):
        export_files(_items(sources), blocker, "copy")
    with pytest.raises(ValueError):
        export_files(_items(sources), tmp_path / "x", "move")  # type: ignore[arg-type]


def test_non_utf8_source_names(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    src = Path(os.fsdecode(raw))
    _photo(src)
    results = export_files([ExportItem(src, 1, 3.0)], tmp_path / "out", "copy")
    assert os.fsencode(results[0].path.name) == b"0001_caf\xe9.jpg"
    manifest_bytes = results.manifest.read_bytes()
    assert raw in manifest_bytes  # the exact on-disk bytes, not a lossy rendering


def test_very_long_source_name_is_shortened(tmp_path: Path) -> None:
    src = _photo(tmp_path / ("x" * 250 + ".jpg"))
    results = export_files([ExportItem(src, 1, 3.0)], tmp_path / "out", "copy")
    assert results[0].ok and results[0].path.suffix == ".jpg"
    assert len(os.fsencode(results[0].path.name)) <= 255


def test_atomic_write_modes(tmp_path: Path) -> None:
    target = tmp_path / "sidecar.xmp"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")  # replace allowed by default (XMP sidecars)
    assert target.read_text() == "two"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(target, b"three", overwrite=False)
    assert target.read_text() == "two"
    assert _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "manifest.csv"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_claim_falls_back_where_hard_links_are_refused(tmp_path: Path, monkeypatch) -> None:
    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    atomic_write_text(tmp_path / "a.csv", "x", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_text(tmp_path / "a.csv", "y", overwrite=False)
    assert (tmp_path / "a.csv").read_text() == "x" and _leftovers(tmp_path) == []


# -- the collision rule at its edges: what counts as "this export is already there" ---------------


def test_a_lookalike_is_not_taken_for_the_export(tmp_path: Path, sources: list[Path]) -> None:
    """Same size and mtime, other bytes (copy); same bytes, another inode (link); a link elsewhere
    (symlink) or a symlink where a copy belongs: each is someone else's file, so the export takes -2."""
    src = sources[2]
    out = tmp_path / "out"
    out.mkdir()
    lookalike = out / "0001_beach.jpg"
    data = bytearray(src.read_bytes())
    data[-3] ^= 0xFF
    lookalike.write_bytes(bytes(data))
    shutil.copystat(src, lookalike)  # what a shallow comparison (size, mtime) would call the same file
    item = [ExportItem(src, 1, 9.0)]
    (copied,) = export_files(item, out, "copy", manifest=False)
    assert copied.path.name == "0001_beach-2.jpg" and not copied.kept
    assert lookalike.read_bytes() == bytes(data)
    shutil.copyfile(src, out / "0001_beach-3.jpg")  # equal bytes, but not the same file for a hard link
    os.symlink(tmp_path / "elsewhere.jpg", out / "0001_beach-4.jpg")
    (linked,) = export_files(item, out, "link", manifest=False)
    assert linked.path.name == "0001_beach-5.jpg" and os.path.samefile(linked.path, src)
    (again,) = export_files(item, out, "link", manifest=False)
    assert again.kept and again.path == linked.path
    (sym,) = export_files(item, out, "symlink", manifest=False)
    assert sym.path.name == "0001_beach-6.jpg" and os.readlink(sym.path) == str(src)
    (copy_again,) = export_files(item, out, "copy", manifest=False)  # the -2 copy, not a link to it
    assert copy_again.kept and copy_again.path == copied.path
    os.unlink(copied.path)
    os.symlink(src, copied.path)  # a symlink to the source is not a copy of it; -3 (equal bytes) is
    (copy_third,) = export_files(item, out, "copy", manifest=False)
    assert copy_third.kept and copy_third.path.name == "0001_beach-3.jpg"


def test_the_default_mode_copies_into_a_new_nested_folder(tmp_path: Path, sources: list[Path]) -> None:
    results = export_files(_items(sources)[:1], tmp_path / "a" / "b" / "c")
    (path,) = [r.path for r in results]
    assert path.parent == tmp_path / "a" / "b" / "c" and not path.is_symlink()
    assert os.stat(path).st_ino != os.stat(sources[0]).st_ino and path.read_bytes() == sources[0].read_bytes()


def test_destination_and_mode_errors_are_one_clear_line(tmp_path: Path, sources: list[Path]) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ExportError) as err:
        export_files(_items(sources), blocker / "sub", "copy")
    assert str(err.value) == f"cannot create {blocker / 'sub'}: Not a directory"
    with pytest.raises(ExportError) as err:
        export_files(_items(sources), blocker, "copy")
    assert str(err.value) in (f"cannot create {blocker}: File exists", f"{blocker} is not a folder")
    with pytest.raises(ValueError, match=r"^unknown export mode 'move' \(copy, link or symlink\)$"):
        export_files(_items(sources), tmp_path / "x", "move")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["copy", "link", "symlink"])
def test_a_vanished_source_is_named_in_every_mode(tmp_path: Path, mode: str) -> None:
    gone = tmp_path / "src" / "gone.jpg"
    (result,) = export_files([ExportItem(gone, 1, 1.0)], tmp_path / "out", mode, manifest=False)
    assert result.error == f"{mode} failed: No such file or directory ({gone})"


def test_a_long_name_is_cut_to_exactly_the_limit(tmp_path: Path) -> None:
    src = _photo(tmp_path / ("x" * 250 + ".jpg"))
    (result,) = export_files([ExportItem(src, 1, 3.0)], tmp_path / "out", "copy", manifest=False)
    assert result.path.name == "0001_" + "x" * 231 + ".jpg" and len(os.fsencode(result.path.name)) == export._NAME_MAX


def test_a_file_that_cannot_be_compared_is_not_taken_for_the_export(tmp_path: Path, sources: list[Path], monkeypatch) -> None:
    """An unreadable file under the name (EACCES; root reads everything, so it is simulated) is
    someone else's: the export takes -2 rather than calling it the same."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "0001_beach.jpg").write_bytes(sources[2].read_bytes())

    def unreadable(a, b, shallow=True):
        raise PermissionError(errno.EACCES, "Permission denied", str(a))

    monkeypatch.setattr(export.filecmp, "cmp", unreadable)
    (result,) = export_files([ExportItem(sources[2], 1, 9.0)], out, "copy", manifest=False)
    assert result.path.name == "0001_beach-2.jpg" and not result.kept
