"""Importing the tensor engine (torch, and timm with the torchvision it brings) with a one-line failure.

A broken or mismatched install fails deep inside these imports: a CPU build of torch beside a
CUDA build of torchvision raises ``RuntimeError: operator torchvision::nms does not exist`` from
torchvision's import, under a traceback of some 200 lines. :func:`require_engine` imports them
before any model is built, so a run that needs the network says instead, in one line, which
packages do not fit together and how to reinstall both from one index.

Importable without torch (versions come from the installed packages' metadata).
"""

from __future__ import annotations

import re
from importlib import metadata

from charmcli.model.errors import ModelUnavailableError

#: The packages whose builds must match; torchvision comes in with timm.
ENGINE_PACKAGES = ("torch", "torchvision")
PYTORCH_INDEX = "https://download.pytorch.org/whl"


class EngineError(ModelUnavailableError):
    """torch (or a package built against it) cannot be imported; ``str()`` is one line."""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def reinstall_command(torch_version: str | None) -> str:
    """A pip command that installs torch and torchvision from one index.

    A torch from PyTorch's own index carries its build in a local version (``2.4.0+cpu``,
    ``2.4.0+cu121``): both packages come again from that build's index. A torch from PyPI has
    none: both come again from PyPI.
    """
    build = re.search(r"\+(cpu|cu\d+|rocm[\d.]+|xpu)$", torch_version or "")
    command = "pip install --force-reinstall " + " ".join(ENGINE_PACKAGES)
    return f"{command} --index-url {PYTORCH_INDEX}/{build.group(1)}" if build else command


def engine_message(exc: BaseException) -> str:
    """One line for an engine import that failed with ``exc``."""
    versions = {p: _version(p) for p in ENGINE_PACKAGES}
    named = " and ".join(f"{p} {v}" if v else f"{p} (not installed)" for p, v in versions.items())
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    reason = first if len(first) <= 100 else first[:99].rsplit(" ", 1)[0] + "…"
    return (
        f"{named} cannot be imported together ({reason}); reinstall both from one index: "
        f"{reinstall_command(versions['torch'])}"
    )


_READY = False


def require_engine() -> None:
    """Import torch and timm (with torchvision), or raise :class:`EngineError` with one line."""
    global _READY
    if _READY:
        return
    try:
        import timm  # noqa: F401  (imports torchvision where it is installed)
        import torch  # noqa: F401
    except Exception as exc:  # RuntimeError (missing operators), ImportError, OSError (shared libraries)
        raise EngineError(engine_message(exc)) from None
    _READY = True
