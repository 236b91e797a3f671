"""Put the best photos in a folder (copy, hard link or symlink) plus a ``manifest.csv``.

Rules, because this touches people's photo libraries:

* sources are only ever read: never opened for writing, moved, or re-timestamped;
* nothing in ``dest`` is ever overwritten: names are claimed with ``os.link``/``os.symlink``,
  which fail instead of replacing, and the next free name (``-2``, ``-3``, …) is tried;
* exporting the same photos again is idempotent: a name that already holds this very export
  (a copy with the same bytes, a hard link to the same file, a symlink to the same path) is kept
  as it is, and charm's own ``manifest.csv`` is replaced by the new one (a ``manifest.csv`` that
  charm did not write is left alone and ``manifest-2.csv`` … is used);
* a copy is complete or absent under its final name: it is written to a hidden temporary file in
  ``dest``, fsynced, and only then linked to the final name (see :mod:`charmcli.library.atomic`).

Exported names carry the rank, ``0001_IMG_1234.jpg``: a file browser sorted by name then shows
the best first, and photos with the same name from different folders (every camera restarts at
``IMG_0001``) rarely collide at all.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import filecmp
import io
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from charmcli.library.atomic import atomic_write_text, claim_name, temp_path_in
from charmcli.library.scan import display_path

ExportMode = Literal["copy", "link", "symlink"]
MANIFEST_COLUMNS = ("rank", "score", "source", "exported", "error")
_NAME_MAX = 240  # bytes: leaves room under the usual 255 for "-NNN" and the temporary name


@dataclass(frozen=True)
class ExportItem:
    """One photo to export; ``extra`` becomes additional manifest columns (e.g. model, date)."""

    source: Path
    rank: int
    score: float
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """Where an item landed (``path``), or why it did not (``error``, one line)."""

    item: ExportItem
    path: Path | None
    error: str | None = None
    kept: bool = False  #: ``path`` already held this export (a repeated export): left as it was

    @property
    def ok(self) -> bool:
        return self.error is None


class ExportResults(list[ExportResult]):
    """The per-item results, plus where the manifest was written (``None`` if not written)."""

    manifest: Path | None = None


class ExportError(Exception):
    """The destination itself is unusable (e.g. not a folder); per-item failures are results."""


def export_files(
    items: Sequence[ExportItem],
    dest: os.PathLike[str] | str,
    mode: ExportMode = "copy",
    *,
    rank_prefix: bool = True,
    manifest: bool = True,
) -> ExportResults:
    """Export ``items`` into ``dest`` (created if needed); one failed item does not stop the rest."""
    if mode not in ("copy", "link", "symlink"):
        raise ValueError(f"unknown export mode {mode!r} (copy, link or symlink)")
    folder = Path(dest)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {display_path(folder)}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise ExportError(f"{display_path(folder)} is not a folder")

    width = max(4, len(str(max((item.rank for item in items), default=0))))
    results = ExportResults()
    for item in items:
        base = _base_name(item, width if rank_prefix else 0)
        try:
            source = Path(item.source)
            kept = _already_there(source, folder, base, mode)
            if kept is not None:
                results.append(ExportResult(item, kept, kept=True))
                continue
            path = _EXPORTERS[mode](source, folder, base)
            results.append(ExportResult(item, path))
        except OSError as exc:
            results.append(ExportResult(item, None, _explain(exc, mode)))
    if manifest:
        results.manifest = write_manifest(results, folder)
    return results


def _base_name(item: ExportItem, width: int) -> str:
    name = Path(item.source).name
    if width:
        name = f"{item.rank:0{width}d}_{name}"
    raw = os.fsencode(name)
    if len(raw) > _NAME_MAX:  # keep the extension, shorten the stem
        stem, suffix = os.path.splitext(name)
        keep = _NAME_MAX - len(os.fsencode(suffix))
        name = os.fsdecode(os.fsencode(stem)[:keep]) + suffix
    return name


def _candidates(base: str) -> Iterator[str]:
    """``name.jpg``, ``name-2.jpg``, ``name-3.jpg``, … (the extension stays last)."""
    yield base
    stem, suffix = os.path.splitext(base)
    n = 2
    while True:
        yield f"{stem}-{n}{suffix}"
        n += 1


def _is_same_export(source: Path, existing: Path, mode: ExportMode) -> bool:
    """Whether ``existing`` is what exporting ``source`` in ``mode`` would have made."""
    try:
        if mode == "symlink":
            return existing.is_symlink() and os.readlink(existing) == os.path.abspath(source)
        if existing.is_symlink():
            return False
        if mode == "link":
            return os.path.samefile(existing, source)
        return existing.is_file() and filecmp.cmp(existing, source, shallow=False)
    except OSError:
        return False


def _already_there(source: Path, folder: Path, base: str, mode: ExportMode) -> Path | None:
    """The name (``base``, ``base-2``, … up to the first free one) already holding this export."""
    if not source.exists():
        return None  # let the exporter explain
    for name in _candidates(base):
        candidate = folder / name
        if not os.path.lexists(candidate):
            return None
        if _is_same_export(source, candidate, mode):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover - _candidates is infinite


def _claim(make: Callable[[Path], object], folder: Path, base: str) -> Path:
    """Call ``make(final)`` with successive free names until one does not exist yet."""
    for name in _candidates(base):
        final = folder / name
        try:
            make(final)
        except FileExistsError:
            continue
        return final
    raise AssertionError("unreachable")  # pragma: no cover - _candidates is infinite


def _export_copy(source: Path, folder: Path, base: str) -> Path:
    tmp = temp_path_in(folder)
    try:
        shutil.copyfile(source, tmp)  # reads the source, writes only tmp
        shutil.copystat(source, tmp)  # copy2 semantics: mtime, atime, mode bits
        _fsync(tmp)
        return _claim(lambda final: claim_name(tmp, final), folder, base)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _export_link(source: Path, folder: Path, base: str) -> Path:
    return _claim(lambda final: os.link(source, final), folder, base)


def _export_symlink(source: Path, folder: Path, base: str) -> Path:
    if not source.exists():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(source))
    target = os.path.abspath(source)  # absolute, so the link survives moving the export folder
    return _claim(lambda final: os.symlink(target, final), folder, base)


_EXPORTERS = {"copy": _export_copy, "link": _export_link, "symlink": _export_symlink}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _explain(exc: OSError, mode: str) -> str:
    if mode == "link" and exc.errno == errno.EXDEV:
        return "cannot hard-link across filesystems; use --copy or --symlink"
    if mode == "link" and exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
        return f"hard link refused ({exc.strerror}); use --copy or --symlink"
    where = f" ({display_path(exc.filename)})" if exc.filename else ""
    return f"{mode} failed: {exc.strerror or type(exc).__name__}{where}"


def write_manifest(results: Sequence[ExportResult], folder: os.PathLike[str] | str) -> Path:
    """Write ``manifest.csv`` atomically, replacing charm's own earlier one.

    The manifest describes the latest export into the folder (files kept from an earlier export
    are listed again). A ``manifest.csv`` that charm did not write (another header) is never
    replaced: ``manifest-2.csv`` … is tried instead. Replaced whole rather than appended: an
    export may carry different extra columns, and an interrupted append would damage it.
    """
    extra_columns: list[str] = []
    for result in results:
        for key in result.item.extra:
            if key not in extra_columns and key not in MANIFEST_COLUMNS:
                extra_columns.append(key)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, *extra_columns])
    for result in results:
        item = result.item
        writer.writerow(
            [
                item.rank,
                repr(float(item.score)),
                os.fspath(item.source),
                result.path.name if result.path is not None else "",
                result.error or "",
                *(_cell(item.extra.get(key)) for key in extra_columns),
            ]
        )
    text = buf.getvalue()
    # surrogateescape writes non-UTF-8 path bytes back exactly as they are on disk.
    for name in _candidates("manifest.csv"):
        final = Path(folder) / name
        if _is_charm_manifest(final):
            return atomic_write_text(final, text, errors="surrogateescape", overwrite=True)
        try:
            return atomic_write_text(final, text, errors="surrogateescape", overwrite=False)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover - _candidates is infinite


def _is_charm_manifest(path: Path) -> bool:
    """A regular file whose first line starts with charm's manifest header."""
    header = ",".join(MANIFEST_COLUMNS).encode()
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as fh:
            return fh.readline().rstrip(b"\r\n").startswith(header)
    except OSError:
        return False


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
