"""Which number format the network runs in: the choice, kept apart from the hardware probe.

``fp32`` is the exact path (the official outputs to 1e-5). ``bf16`` runs the matrix products in
bfloat16 where the hardware multiplies it natively: on a CPU with AMX or AVX512-BF16 that is
several times faster than fp32; on a CPU without either it is emulated and slower than fp32, so
``auto`` never picks it there. On CUDA ``bf16`` needs compute capability 8.0 or newer; older
cards get fp16 instead (same speed class, narrower range).

:func:`choose_precision` is a pure function of a :class:`Capabilities` record, so the rule is
tested over any hardware; :func:`detect_capabilities` is the one place that asks the machine.
This module imports no torch until :func:`detect_capabilities` runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: What a user may ask for (``--precision`` / ``CHARM_PRECISION``).
REQUESTS = ("fp32", "bf16", "auto")
#: The default request: bf16 where the hardware has it (see docs/speed.md for the fidelity
#: measured against fp32: Spearman 0.999, top-10 % unchanged), fp32 elsewhere.
DEFAULT_PRECISION = "auto"
#: What a network actually runs in, and what a stored score records.
PRECISIONS = ("fp32", "bf16", "fp16")
#: CPU feature flags (``/proc/cpuinfo`` spelling) that mean native bfloat16 products.
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@dataclass(frozen=True)
class Capabilities:
    """What the device running the network can do, as far as the precision choice cares."""

    device_type: str  #: ``cpu`` or ``cuda``
    cpu_flags: frozenset[str] = frozenset()  #: lower-case feature flags of the CPU
    cuda_bf16: bool = False  #: the CUDA device multiplies bfloat16 natively (sm80+)
    cuda_name: str = ""  #: for messages only

    @property
    def native_bf16(self) -> bool:
        if self.device_type == "cuda":
            return self.cuda_bf16
        return bool(self.cpu_flags & NATIVE_BF16_CPU_FLAGS)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and, for ``--profile`` / ``charm show``, why."""

    precision: str  #: one of :data:`PRECISIONS`
    requested: str  #: one of :data:`REQUESTS`
    reason: str

    def describe(self) -> str:
        """One line, e.g. ``bf16 (auto: CPU has amx_bf16)``."""
        return f"{self.precision} ({self.requested}: {self.reason})"


def _bf16_flags(caps: Capabilities) -> str:
    return ", ".join(sorted(caps.cpu_flags & NATIVE_BF16_CPU_FLAGS))


def choose_precision(requested: str, caps: Capabilities, *, cpu_reduced: bool = True) -> PrecisionChoice:
    """Resolve ``fp32`` / ``bf16`` / ``auto`` for a device.

    * ``fp32`` is always fp32.
    * ``auto``: CUDA → bf16, or fp16 where the card lacks bf16; a CPU with native bf16 (AMX or
      AVX512-BF16) → bf16; any other CPU → fp32 (emulated bf16 would be slower than fp32).
    * ``bf16`` asked for explicitly is honoured on any CPU (emulated where not native: slow,
      but the numbers are the same, which is what a fidelity check needs); on a CUDA card
      without bf16 it becomes fp16, the card's reduced precision.
    * ``cpu_reduced=False``: the model has no reduced-precision path on a CPU (EAT): fp32 there.
    """
    if requested not in REQUESTS:
        raise ValueError(f"precision must be one of {', '.join(REQUESTS)}, not {requested!r}")
    if requested == "fp32":
        return PrecisionChoice("fp32", requested, "asked for")
    if caps.device_type == "cuda":
        if caps.cuda_bf16:
            return PrecisionChoice("bf16", requested, f"{caps.cuda_name or 'GPU'} has bf16")
        return PrecisionChoice("fp16", requested, f"{caps.cuda_name or 'GPU'} has no bf16, fp16 instead")
    if not cpu_reduced:
        return PrecisionChoice("fp32", requested, "this model runs fp32 on a CPU")
    if caps.native_bf16:
        return PrecisionChoice("bf16", requested, f"CPU has {_bf16_flags(caps)}")
    if requested == "bf16":
        return PrecisionChoice("bf16", requested, "asked for; CPU has no native bf16, emulated (slow)")
    return PrecisionChoice("fp32", requested, "CPU has no native bf16 (no amx_bf16 / avx512_bf16)")


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` line of ``/proc/cpuinfo`` text (first processor) as a set."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.lower().split())
    return frozenset()


def cpu_flags() -> frozenset[str]:
    """This CPU's flags: torch's own probe (any OS) joined with ``/proc/cpuinfo`` (Linux)."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        flags |= parse_cpu_flags(Path("/proc/cpuinfo").read_text(errors="replace"))
    import torch

    # every CPU with AMX also has AVX512-BF16, so this one probe covers both where there is no
    # /proc/cpuinfo to read
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    try:
        if probe is not None and probe():
            flags.add("avx512_bf16")
    except Exception:  # a probe that fails says nothing either way
        pass
    return frozenset(flags)


def detect_capabilities(device: object) -> Capabilities:
    """Ask the machine what ``device`` (a ``torch.device``) can do."""
    import torch

    dev = torch.device(device)  # type: ignore[arg-type]
    if dev.type == "cuda":
        return Capabilities(
            "cuda",
            cuda_bf16=bool(torch.cuda.is_bf16_supported(including_emulation=False)),
            cuda_name=torch.cuda.get_device_name(dev),
        )
    return Capabilities("cpu", cpu_flags=cpu_flags())


def resolve_precision(requested: str, device: object, *, cpu_reduced: bool = True) -> PrecisionChoice:
    """:func:`choose_precision` for this machine's ``device`` (a ``torch.device``)."""
    if requested == "fp32":
        return choose_precision(requested, Capabilities("cpu"))
    return choose_precision(requested, detect_capabilities(device), cpu_reduced=cpu_reduced)


#: Where a GPU driver shows itself on Linux: NVIDIA, AMD ROCm (torch calls it "cuda" too), WSL.
GPU_DRIVER_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def gpu_possible() -> bool:
    """Whether torch could see a CUDA device here; ``False`` only when that is certain without
    importing torch (macOS has no CUDA; on Linux no driver shows its device nodes)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(n) for n in GPU_DRIVER_NODES)
    return True


def resolve_for_run(requested: str, device: str, *, cpu_reduced: bool = True) -> PrecisionChoice:
    """The precision a run's scores will carry, known before any model loads: the cache lookups
    of a fully scored folder need it, and they import no torch on a CPU machine (``device``
    ``cpu``, or ``auto`` without a GPU driver: the CPU's flags come from ``/proc/cpuinfo``)."""
    if requested == "fp32":
        return choose_precision(requested, Capabilities("cpu"))
    if device == "cpu" or (device == "auto" and not gpu_possible()):
        flags = frozenset()
        with contextlib.suppress(OSError):
            flags = parse_cpu_flags(Path("/proc/cpuinfo").read_text(errors="replace"))
        caps = Capabilities("cpu", cpu_flags=flags) if flags else Capabilities("cpu", cpu_flags=cpu_flags())
        return choose_precision(requested, caps, cpu_reduced=cpu_reduced)
    from charmcli.model.base import resolve_device

    return resolve_precision(requested, resolve_device(device), cpu_reduced=cpu_reduced)
