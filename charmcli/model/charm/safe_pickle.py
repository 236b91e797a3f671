"""Unpickle a torch checkpoint without running anything it contains.

A pickle is a small program: it names globals (``module.name``) and asks to call them. The
published Charm files are whole pickled ``nn.Module`` trees, so they name the authors' classes,
``transformers``' DINOv2 modules, an ``ml_collections`` config and a few ``torch.nn`` layers, and
nobody can list in advance every harmless class a training script may leave in a file. So the
trust decision is not "is this class on a list" but "does anything get *called*":

* a handful of **real rebuild functions** (tensors, parameters, ``OrderedDict``, ``set``, dtypes)
  are the only callables the pickle reaches, wrapped so they accept nothing but plain data;
* **every other global** becomes an inert :class:`StandIn` type: "calling" it records the
  arguments, ``BUILD`` records the state, nothing of the real class is imported or run;
* globals that only a payload would name (``os``, ``subprocess``, ``builtins.eval``,
  ``importlib``, ``runpy``, …) are refused by name with a clear message, because a file that
  names them is hostile or broken and the user should hear so rather than get a stand-in.

What the caller trusts afterwards is the *structure*: tensors found in the module tree must map
exactly onto a known network (see :mod:`charmcli.model.charm.checkpoint`); stand-ins are only read.
"""

from __future__ import annotations

import collections
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

import torch

from charmcli.model.errors import CheckpointError, UnsafeCheckpointError


class StandIn:
    """Inert replacement for a pickled global: keeps what the pickle gave it, runs nothing."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = kwargs or None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> StandIn:
        raise UnsafeCheckpointError(f"checkpoint tried to call {self._qualname}; refused")

    def __repr__(self) -> str:
        return f"<StandIn {self._qualname}>"

    @property
    def qualname(self) -> str:
        """``module.Name`` of the global this stands in for."""
        return self._qualname

    def attrs(self) -> dict[str, Any]:
        """The object's ``__dict__`` as pickled (nn.Module state, config fields, …)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        return state if isinstance(state, dict) else {}


_STANDIN_TYPES: dict[tuple[str, str], type[StandIn]] = {}


def stand_in(module: str, name: str) -> type[StandIn]:
    """The (cached) inert type standing in for ``module.name``."""
    key = (module, name)
    if key not in _STANDIN_TYPES:
        _STANDIN_TYPES[key] = type(name, (StandIn,), {"_qualname": f"{module}.{name}"})
    return _STANDIN_TYPES[key]


# -- the only real callables -----------------------------------------------------------------


def _plain_hooks(hooks: Any) -> None:
    if hooks not in (None, {}) and not (isinstance(hooks, collections.OrderedDict) and not hooks):
        raise UnsafeCheckpointError("checkpoint attaches hooks to a tensor; refused (nothing was executed)")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch's tensor rebuild, for storages and integer geometry only (no hooks, no metadata)."""
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError("checkpoint builds a tensor from something that is not a storage; refused")
    if not isinstance(offset, int) or not all(
        isinstance(t, tuple) and all(isinstance(v, int) for v in t) for t in (size, stride)
    ):
        raise CheckpointError("checkpoint has a tensor with a malformed shape")
    _plain_hooks(hooks)
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, bool(requires_grad), collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    """A Parameter is only its tensor here: hooks are refused, extra state is ignored."""
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError("checkpoint builds a parameter from something that is not a tensor; refused")
    _plain_hooks(hooks)
    return data


_REAL_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    **{("torch", name): getattr(torch, name) for name in (
        "float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool",
    )},
}  # fmt: skip

# -- names only a payload would use -------------------------------------------------------------

# Whole modules whose globals run programs, open files, import code or reach into the interpreter.
_PAYLOAD_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
    "_pickle", "marshal", "ctypes", "pty", "code", "codeop", "webbrowser", "multiprocessing", "io",
    "_io", "pathlib", "tempfile", "signal", "asyncio", "threading", "_thread", "gc", "inspect",
    "types", "functools", "operator", "_operator", "copyreg", "shelve", "dill", "cloudpickle", "joblib",
    "urllib", "http", "ftplib", "smtplib", "telnetlib", "platform", "sysconfig", "site", "zipimport",
    "pdb", "timeit", "trace", "cProfile", "profile", "glob", "fileinput", "commands", "popen2",
}  # fmt: skip
# Individual names elsewhere that execute, import, or reach attributes / files.
_PAYLOAD_NAMES = {
    "builtins": {
        "eval", "exec", "compile", "getattr", "setattr", "delattr", "__import__", "open", "globals",
        "locals", "vars", "input", "breakpoint", "help", "exit", "quit", "memoryview", "type",
        "object", "super", "classmethod", "staticmethod", "property", "__build_class__", "print",
    },
    "torch": {"load", "save", "compile", "jit", "hub", "ops", "package", "classes"},
    "numpy": {"load", "save", "fromfile", "loadtxt", "genfromtxt", "memmap"},
}  # fmt: skip
_PAYLOAD_PREFIXES = (
    "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension", "torch.ops", "torch._ops",
    "torch.serialization", "torch.distributed", "torch._dynamo", "torch.compiler", "numpy.lib.npyio",
    "numpy.ctypeslib", "numpy.distutils",
)  # fmt: skip
_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}  # protocol 0-2 names


def is_payload(module: str, name: str) -> bool:
    """Whether ``module.name`` is a global only a code-running pickle would name."""
    top = module.split(".", 1)[0]
    return (
        top in _PAYLOAD_MODULES
        or name in _PAYLOAD_NAMES.get(module, ())
        or any(module == p or module.startswith(p + ".") for p in _PAYLOAD_PREFIXES)
        or name.startswith("__")  # __import__, __build_class__, __getattribute__, …
    )


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = _ALIASES.get(module, module)
        if (module, name) in _REAL_GLOBALS:
            return _REAL_GLOBALS[(module, name)]
        if is_payload(module, name):
            raise UnsafeCheckpointError(
                f"checkpoint references {module}.{name}, which only code-running files use; "
                "refused to load it (nothing was executed)"
            )
        return stand_in(module, name)


# torch.load drives the zip container and storages and calls ``pickle_module.Unpickler``;
# passing this module keeps torch's file handling while every class lookup stays ours.
_inert_pickle = types.ModuleType("charm_inert_pickle")
_inert_pickle.Unpickler = _InertUnpickler  # type: ignore[attr-defined]
_inert_pickle.load = lambda f, **kw: _InertUnpickler(f, **kw).load()  # type: ignore[attr-defined]


def safe_unpickle(path: Path) -> Any:
    """Unpickle a torch zip checkpoint into plain data, tensors and stand-ins (CPU storages).

    Storages tagged ``cuda:0`` (files saved on a GPU) load on the CPU. Any failure is one line.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path.name}: not a PyTorch zip checkpoint (truncated, or an old/unknown format)")
    try:
        return torch.load(path, map_location="cpu", pickle_module=_inert_pickle, weights_only=False, mmap=False)
    except CheckpointError:
        raise
    except Exception as exc:  # torch and pickle raise many types on damaged files
        cause: BaseException = exc
        while (inner := cause.__cause__ or cause.__context__) is not None:
            if isinstance(inner, CheckpointError):
                raise inner from None
            cause = inner
        message = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path.name}: unreadable checkpoint ({type(exc).__name__}: {message})") from None
