"""What a cluster job scores: photo folders and files, manifests, and filesystem URLs.

* a local folder or photo: walked by :func:`charmcli.library.scan.iter_files`, exactly as
  ``charm score`` walks it (same extensions, hidden/junk names skipped, symlink loops handled);
* a manifest, ``*.txt`` (one path or URL a line; blank lines and ``#`` comments skipped) or
  ``*.parquet`` (a ``path`` column): its entries are taken as they are, relative local paths
  against the manifest's folder, and never walked (a manifest of millions lists files);
* a URL (``file://``, ``s3://``, ``gs://``, ``hdfs://``, anything pyarrow's filesystems open):
  listed recursively with the same extension and hidden-name rules; ``file://`` becomes a plain
  local path, so its rows import into the store like any local photo.

Nothing is opened here except manifests: reading happens in the CPU stage on the workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from charmcli.library.scan import ScanProblem, is_supported, iter_files

MANIFEST_SUFFIXES = (".txt", ".parquet")


class InputError(Exception):
    """An INPUT cannot be listed at all (missing, unreadable manifest); ``str()`` is one line."""


@dataclass
class Listing:
    paths: list[str] = field(default_factory=list)  #: unique, in input order: absolute paths or URLs
    problems: list[tuple[str, str]] = field(default_factory=list)  #: (path, one-line reason)

    def add(self, path: str, seen: set[str]) -> None:
        if path not in seen:
            seen.add(path)
            self.paths.append(path)


def is_url(text: str) -> bool:
    return "://" in text


def list_inputs(inputs: Iterable[str | os.PathLike[str]]) -> Listing:
    """Every file to score, once, plus the problems met while walking (they become error rows)."""
    listing, seen = Listing(), set()
    for raw in inputs:
        text = os.fspath(raw)
        if text.startswith("file://"):
            text = _file_url_path(text)
        if is_url(text):
            for path in _list_url(text):
                listing.add(path, seen)
        elif os.path.isfile(text) and text.lower().endswith(MANIFEST_SUFFIXES):
            for path in read_manifest(text):
                listing.add(path, seen)
        elif not os.path.lexists(text):
            raise InputError(f"no such file or folder: {text}")
        else:
            for item in iter_files([text]):
                path = os.fsdecode(os.path.abspath(item.path))
                if isinstance(item, ScanProblem):
                    if path not in seen:
                        seen.add(path)
                        listing.problems.append((path, item.reason))
                else:
                    listing.add(path, seen)
    return listing


def read_manifest(manifest: str) -> list[str]:
    """Entries of a ``.txt`` or ``.parquet`` manifest; relative local paths resolve beside it."""
    folder = os.path.dirname(os.path.abspath(manifest))
    try:
        if manifest.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(manifest)
            if "path" not in table.column_names:
                raise InputError(f"{manifest}: a Parquet manifest needs a 'path' column")
            entries = [p for p in table.column("path").to_pylist() if p]
        else:
            with open(manifest, encoding="utf-8", errors="surrogateescape") as f:
                entries = [s for line in f if (s := line.strip()) and not s.startswith("#")]
    except InputError:
        raise
    except Exception as exc:  # OSError, ArrowInvalid, ...: one line, not a traceback
        raise InputError(f"cannot read manifest {manifest}: {' '.join(str(exc).split())}") from None
    out = []
    for entry in entries:
        if entry.startswith("file://"):
            entry = _file_url_path(entry)
        if not is_url(entry) and not os.path.isabs(entry):
            entry = os.path.join(folder, entry)
        out.append(entry if is_url(entry) else os.path.normpath(entry))
    return out


def _file_url_path(url: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(url).path)


def _list_url(url: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.fs as pafs

    scheme = url.split("://", 1)[0]
    try:
        fs, base = pafs.FileSystem.from_uri(url)
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"no such file or folder: {url}")
        if info.type == pafs.FileType.File:
            return [url]
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except InputError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot list {url}: {' '.join(str(exc).split())}") from None
    found = []
    for i in infos:
        rel = i.path[len(base) :].strip("/")
        if i.type != pafs.FileType.File or not is_supported(i.base_name):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        found.append(f"{scheme}://{i.path}")
    return sorted(found)
