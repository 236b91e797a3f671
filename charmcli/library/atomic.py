"""Write files so that a reader (or a crash) never sees half of one.

The pattern: write a temporary file in the *same* folder (so the final step is a rename/link on
one filesystem), fsync it, then give it its final name in one step. ``os.replace`` is used where
replacing is wanted (XMP sidecars); where it is not (exports, manifests), ``os.link`` claims the
name: it fails with ``FileExistsError`` instead of overwriting, which makes "find a free name and
take it" race-free even with several exporters in one folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

#: Suffix of in-progress files; an interrupted run may leave ``.<random>.charm-partial`` behind,
#: never a half-written file under a real name.
PARTIAL_SUFFIX = ".charm-partial"

# errno values meaning "this filesystem/OS cannot hard-link here" (FAT/exFAT, some FUSE/SMB mounts)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def temp_path_in(folder: Path) -> Path:
    """A fresh hidden, unguessable name in ``folder`` for an in-progress file."""
    return folder / f".{secrets.token_hex(8)}{PARTIAL_SUFFIX}"


def claim_name(tmp: Path, final: Path) -> None:
    """Give ``tmp`` the name ``final`` unless ``final`` exists (then ``FileExistsError``).

    ``tmp`` still exists afterwards when the hard link was made; callers unlink it. Where hard
    links are impossible the fallback reserves ``final`` with ``O_EXCL`` and renames over the
    reservation: still no overwrite of anything foreign, but a crash in that tiny window leaves an
    empty file under the final name.
    """
    try:
        os.link(tmp, final)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.replace(tmp, final)


def _fsync_dir(folder: Path) -> None:
    """Persist the new directory entry (best effort: not every platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: os.PathLike[str] | str, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` all-or-nothing; with ``overwrite=False`` never replace a file.

    The file gets the usual permissions (0666 minus umask), not mkstemp's 0600. Raises
    ``FileExistsError`` when ``overwrite`` is false and ``path`` exists.
    """
    final = Path(path)
    tmp = temp_path_in(final.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            claim_name(tmp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return final


def atomic_write_text(
    path: os.PathLike[str] | str,
    text: str,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    overwrite: bool = True,
) -> Path:
    """:func:`atomic_write_bytes` for text (``errors="surrogateescape"`` keeps odd path bytes)."""
    return atomic_write_bytes(path, text.encode(encoding, errors), overwrite=overwrite)
