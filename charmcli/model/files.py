"""What kind of weights file a path holds, from its first bytes (no torch, so the CLI can check
``--checkpoint``/``--pos-embed`` before paying seconds for importing it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickletools
import zipfile
from typing import Literal

WeightsFormat = Literal["torch-zip", "safetensors"]
WeightsContent = Literal["tensor", "mapping"]


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


def weights_content(path: os.PathLike[str] | str) -> WeightsContent | None:
    """Whether a weights file holds one ``tensor`` (a position table) or a ``mapping`` of them (a
    checkpoint); ``None`` when that cannot be told. Nothing is unpickled: the opcodes are read.

    ``torch.save`` of a tensor pickles a call to ``torch._utils._rebuild_tensor_v2`` (or
    ``_rebuild_parameter``) first; a state dict or a training checkpoint starts with a dict.
    A safetensors file lists its tensors in its JSON header.
    """
    try:
        kind = weights_format(path)
        if kind == "safetensors":
            with open(path, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            return "tensor" if len([k for k in header if k != "__metadata__"]) == 1 else "mapping"
        if kind == "torch-zip":
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if name is None:
                    return None
                data = z.read(name)
            for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
                if op.name in ("EMPTY_DICT", "DICT"):
                    return "mapping"
                if op.name == "GLOBAL":  # the first object the pickle builds
                    if str(arg).startswith("torch._utils _rebuild_"):
                        return "tensor"
                    return "mapping" if arg == "collections OrderedDict" else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return None


def sha256_file(path: os.PathLike[str] | str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file: what identifies a checkpoint in caches and in the score database."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
