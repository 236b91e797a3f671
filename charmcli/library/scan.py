"""Find photo files under the paths a user names, without ever opening them.

The walk only uses ``os.scandir``/``stat``: opening a FIFO blocks forever and opening a device can
have side effects, so nothing is opened here. Directory symlinks are followed (people link photo
folders together), which is why every directory and every file is keyed by ``(st_dev, st_ino)``:
a symlink loop or a second link to the same folder is walked once, and a file reachable under
several names (symlinks, hard links) is yielded once. Problems never stop the walk; they come out
of the iterator as :class:`ScanProblem` items in the place where they were met.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Extensions the scanner picks up (lower case, with the dot). HEIC/AVIF/RAW are listed even when
#: their optional decoder is missing, so such photos surface as a clear "install X" error instead
#: of being skipped silently.
RASTER_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif", ".avif",
     ".mpo", ".jxl"}
)  # fmt: skip
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".rwl", ".raf",
     ".pef", ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mef", ".mos", ".x3f"}
)  # fmt: skip
SUPPORTED_EXTENSIONS = RASTER_EXTENSIONS | RAW_EXTENSIONS

#: Extensions of pictures charm cannot score: met while walking, they are reported as skipped
#: (by name, with the reason) rather than passed over in silence.
UNSCORABLE_EXTENSIONS: dict[str, str] = {
    ".psd": "Photoshop document", ".psb": "Photoshop document", ".xcf": "GIMP document",
    ".kra": "Krita document", ".exr": "OpenEXR HDR image", ".hdr": "Radiance HDR image",
    ".jp2": "JPEG 2000 image", ".j2k": "JPEG 2000 image", ".jpf": "JPEG 2000 image",
}  # fmt: skip

#: Folder names that photo tools and NAS boxes litter libraries with (thumbnail caches, resource
#: forks). Dot-names are skipped anyway; these are the ones without a dot.
JUNK_NAMES = frozenset({"@eaDir", "__MACOSX", ".thumbnails", "#recycle", "#snapshot"})


@dataclass(frozen=True)
class ScanEntry:
    """A regular file with a supported extension, as found (``path`` is absolute, not resolved)."""

    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    """Something the walk could not use; ``reason`` is one line meant for the user.

    ``skipped``: a picture in a format charm does not score (not an error: the run still
    succeeds, but the file is named).
    """

    path: Path
    reason: str
    skipped: bool = False


def display_path(path: os.PathLike[str] | str | bytes) -> str:
    """Render any path as one printable line: undecodable bytes become ``\\xNN`` escapes.

    Names that are not valid UTF-8 reach Python as lone surrogates (surrogateescape); printing them
    raises ``UnicodeEncodeError``. Newlines and other control characters in names are escaped too,
    so one path is always one line of output.
    """
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def is_supported(name: str | os.PathLike[str]) -> bool:
    """Whether a file name has one of :data:`SUPPORTED_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(name))[1].lower() in SUPPORTED_EXTENSIONS


def _is_skipped_name(name: str) -> bool:
    return name.startswith(".") or name in JUNK_NAMES


def _sort_key(entry: os.DirEntry[str]) -> bytes:
    # Sort by the raw bytes: stable across locales and defined for names that are not UTF-8.
    return os.fsencode(entry.name)


def _reason(exc: OSError, what: str) -> str:
    """One-line description of an OSError, e.g. ``cannot list folder: Permission denied``."""
    text = exc.strerror or type(exc).__name__
    return f"{what}: {text}"


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def _explain_stat_error(path: Path, exc: OSError) -> str:
    """Say *why* a path cannot be stat'ed: dangling or looping symlinks read differently."""
    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if isinstance(exc, FileNotFoundError):
        try:
            if os.path.islink(path):
                return f"dangling symlink (target {display_path(os.readlink(path))} does not exist)"
        except OSError:
            pass
        return "no such file or directory"
    return _reason(exc, "cannot stat")


class _Walker:
    """Holds the walk's memory: which directories and files were already seen."""

    def __init__(self) -> None:
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[tuple[int, int]] = set()

    def file(self, path: Path, st: os.stat_result, *, explicit: bool) -> ScanEntry | ScanProblem | None:
        if not stat.S_ISREG(st.st_mode):
            # Only worth a note when the name says "photo"; sockets etc. are silently ignored.
            if explicit or is_supported(path.name):
                return ScanProblem(path, f"not a regular file ({_file_type(st.st_mode)}); skipped")
            return None
        if not is_supported(path.name):
            kind = UNSCORABLE_EXTENSIONS.get(path.suffix.lower())
            if kind is not None:
                return ScanProblem(path, f"{kind} ({path.suffix}): not a format charm scores", skipped=True)
            if explicit:
                return ScanProblem(path, f"unsupported file type {path.suffix or '(no extension)'!r}")
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            return None
        self.seen_files.add(key)
        return ScanEntry(path, st.st_size, st.st_mtime_ns)

    def walk(self, top: Path, top_stat: os.stat_result) -> Iterator[ScanEntry | ScanProblem]:
        """Depth-first, sorted walk with an explicit stack (no recursion limit on deep trees)."""
        top_key = (top_stat.st_dev, top_stat.st_ino)
        if top_key in self.seen_dirs:
            return
        self.seen_dirs.add(top_key)
        # Each frame: (directory path, its (dev, ino), iterator over its sorted entries).
        stack: list[tuple[Path, tuple[int, int], Iterator[os.DirEntry[str]]]] = []
        opened = self._list(top)
        if isinstance(opened, ScanProblem):
            yield opened
            return
        stack.append((top, top_key, opened))
        while stack:
            folder, _key, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            if _is_skipped_name(entry.name):
                continue
            path = folder / entry.name
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                yield ScanProblem(path, _explain_stat_error(path, exc))
                continue
            if not stat.S_ISDIR(st.st_mode):
                found = self.file(path, st, explicit=False)
                if found is not None:
                    yield found
                continue
            key = (st.st_dev, st.st_ino)
            if any(key == frame[1] for frame in stack):
                yield ScanProblem(path, "symlink loop (links back to a folder being walked); not followed")
                continue
            if key in self.seen_dirs:
                continue  # a second link to a folder already walked: its files were yielded once
            self.seen_dirs.add(key)
            listed = self._list(path)
            if isinstance(listed, ScanProblem):
                yield listed
                continue
            stack.append((path, key, listed))

    @staticmethod
    def _list(folder: Path) -> Iterator[os.DirEntry[str]] | ScanProblem:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_sort_key)
        except OSError as exc:
            return ScanProblem(folder, _reason(exc, "cannot list folder"))
        return iter(entries)


def iter_files(paths: Iterable[os.PathLike[str] | str | bytes]) -> Iterator[ScanEntry | ScanProblem]:
    """Yield every supported photo under ``paths`` once, in a deterministic order.

    Top-level paths are taken in the order given; inside folders entries are sorted by name
    (bytes). Hidden names and known junk folders are skipped while walking, but a file named
    explicitly is always considered (the user asked for it). Missing paths, dangling symlinks,
    unreadable folders, symlink loops and non-regular files come out as :class:`ScanProblem`.
    """
    walker = _Walker()
    for raw in paths:
        path = Path(os.fsdecode(raw)).absolute()  # bytes paths (non-UTF-8 argv) work too
        try:
            st = os.stat(path)
        except OSError as exc:
            yield ScanProblem(path, _explain_stat_error(path, exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from walker.walk(path, st)
        else:
            found = walker.file(path, st, explicit=True)
            if found is not None:
                yield found
