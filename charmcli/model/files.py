"""What kind of weights file a path holds, from its first bytes (no torch, so the CLI can check
``--checkpoint``/``--pos-embed`` before paying seconds for importing it)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Literal

WeightsFormat = Literal["torch-zip", "safetensors"]


def weights_format(path: os.PathLike[str] | str) -> WeightsFormat | None:
    """``torch-zip`` (``torch.save`` since 1.6), ``safetensors``, or ``None`` for anything else.

    safetensors starts with an 8-byte little-endian header length followed by a JSON object.
    Unreadable files are ``None`` too: the caller says the file is not a checkpoint.
    """
    try:
        if zipfile.is_zipfile(path):
            return "torch-zip"
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if len(head) == 9 and 1 < int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{":
        return "safetensors"
    return None


def sha256_file(path: os.PathLike[str] | str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file: what identifies a checkpoint in caches and in the score database."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
