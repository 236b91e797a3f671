"""The refusal by name: every global the docs promise to refuse stops a checkpoint, in one line.

The names are read from the documentation (the promise), not from the code's own list, so
dropping one from the code fails here; and every name the code lists is checked too, so a
change to how names are matched fails as well.
"""

from __future__ import annotations

import collections
import io
import re
import zipfile
from pathlib import Path

import pytest
import torch

from charmcli.model import CheckpointError, UnsafeCheckpointError
from charmcli.model.charm import safe_pickle as sp

DOCS = Path(__file__).resolve().parents[2] / "docs" / "how-charm-runs-charm.md"
#: Where the promise is written: (text, the words that open its parenthesised list of names).
PROMISES = (
    (lambda: DOCS.read_text(), "globals that only a payload names ("),
    (lambda: sp.__doc__ or "", "globals that only a payload would name ("),
)


def promised_names() -> set[tuple[str, str]]:
    """(module, name) pairs from each promise: ``os`` → a module, ``builtins.eval``/``exec`` → names."""
    found: set[tuple[str, str]] = set()
    for read, opening in PROMISES:
        text = read()
        assert opening in text, f"the promise {opening!r} is gone from the docs: update this test's source"
        listed = re.sub(r"/\s+", "/", text.split(opening, 1)[1].split(")", 1)[0])  # a list may wrap after "/"
        for group in re.findall(r"`+[\w.]+`+(?:/`+[\w.]+`+)*", listed):
            first, *more = (t.strip("`") for t in group.split("/"))
            module, _, name = first.rpartition(".")
            if not module:  # a whole module: any global in it
                found.add((first, "run"))
                continue
            found.update((module, n) for n in (name, *more))
    return found


def refusal(module: str, name: str) -> str:
    return f"checkpoint references {module}.{name}, which only code-running files use; refused to load it (nothing was executed)"


def checkpoint_naming(path: Path, module: str, name: str) -> Path:
    """A torch zip checkpoint whose pickle calls ``module.name()``: GLOBAL, empty args, REDUCE."""
    torch.save({}, path)
    with zipfile.ZipFile(path) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    pkl = next(n for n in entries if n.endswith("/data.pkl"))
    entries[pkl] = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    with zipfile.ZipFile(path, "w") as zout:
        for n, data in entries.items():
            zout.writestr(n, data)
    return path


def test_the_docs_promise_names_and_the_code_lists_them():
    names = promised_names()
    for expected in (("subprocess", "run"), ("os", "run"), ("builtins", "eval"), ("torch", "hub")):
        assert expected in names, f"{expected} no longer parsed from the docs"
    for module, name in names:
        assert sp.is_payload(module, name), f"the docs promise {module}.{name} is refused; the code does not"


@pytest.mark.parametrize(("module", "name"), sorted(promised_names()), ids=lambda v: v)
def test_every_promised_name_is_refused_by_name_in_one_line(tmp_path, module, name):
    path = checkpoint_naming(tmp_path / "hostile.pth", module, name)
    with pytest.raises(UnsafeCheckpointError) as err:
        sp.safe_unpickle(path)
    assert str(err.value) == refusal(module, name)


def _unpickle(module: str, name: str):
    return sp._InertUnpickler(io.BytesIO(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b".")).load()


def test_every_name_the_code_lists_is_refused_and_its_neighbours_are_not():
    """Each listed module (and its submodules), name and prefix refuses; a harmless neighbour stands in."""
    cases = [(m, "run") for m in sp._PAYLOAD_MODULES] + [(m + ".sub", "run") for m in sp._PAYLOAD_MODULES]
    cases += [(m, n) for m, names in sp._PAYLOAD_NAMES.items() for n in names]
    cases += [(p, "run") for p in sp._PAYLOAD_PREFIXES] + [(p + ".inner", "run") for p in sp._PAYLOAD_PREFIXES]
    cases += [(old, "eval") for old, new in sp._ALIASES.items() if new == "builtins"]
    cases += [("timm.models", "__reduce__"), ("somewhere", "__getattribute__")]  # dunder names
    for module, name in cases:
        with pytest.raises(UnsafeCheckpointError) as err:
            _unpickle(module, name)
        assert str(err.value) == refusal(sp._ALIASES.get(module, module), name)
    harmless = [("ml_collections", "ConfigDict"), ("transformers.models.dinov2", "Dinov2Model"),
                ("torch.nn.modules.activation", "ReLU"), ("builtins", "dict"), ("osx", "run"),
                ("ossify", "run"), ("torch.hubble", "x"), ("numpy", "dtype"), ("torch", "loader")]  # fmt: skip
    for module, name in harmless:
        assert isinstance(_unpickle(module, name), type) and _unpickle(module, name).__mro__[1] is sp.StandIn


# -- the only real callables, and the stand-ins: each refusal in its own words --------------------


def _storage(n: int = 4) -> torch.storage.TypedStorage:
    """A storage as torch.load hands it to the rebuild functions (typed, wrapping raw bytes)."""
    raw = torch.arange(n, dtype=torch.float32).untyped_storage()
    return torch.storage.TypedStorage(wrap_storage=raw, dtype=torch.float32, _internal=True)


def test_a_tensor_is_rebuilt_only_from_a_storage_and_integer_geometry():
    t = sp._rebuild_tensor_v2(_storage(), 1, (2,), (1,), 1, collections.OrderedDict())
    assert t.tolist() == [1.0, 2.0] and t.requires_grad is True and t.dtype == torch.float32
    t = sp._rebuild_tensor_v2(_storage(6), 0, (2, 3), (1, 2), False, None)
    assert t.tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]  # the stride is honoured
    with pytest.raises(UnsafeCheckpointError) as err:
        sp._rebuild_tensor_v2(b"not a storage", 0, (2,), (1,), False, None)
    assert str(err.value) == "checkpoint builds a tensor from something that is not a storage; refused"
    for offset, size, stride in ((0.5, (2,), (1,)), (0, [2], (1,)), (0, (2,), (1.0,)), (0, (2,), [1])):
        with pytest.raises(CheckpointError) as err:
            sp._rebuild_tensor_v2(_storage(), offset, size, stride, False, None)
        assert str(err.value) == "checkpoint has a tensor with a malformed shape"


@pytest.mark.parametrize("hooks", [collections.OrderedDict({1: print}), {"h": 1}, [print]])
def test_hooks_on_a_tensor_or_a_parameter_are_refused(hooks):
    message = "checkpoint attaches hooks to a tensor; refused (nothing was executed)"
    with pytest.raises(UnsafeCheckpointError) as err:
        sp._rebuild_tensor_v2(_storage(), 0, (2,), (1,), False, hooks)
    assert str(err.value) == message
    with pytest.raises(UnsafeCheckpointError) as err:
        sp._rebuild_parameter(torch.zeros(2), False, hooks)
    assert str(err.value) == message


def test_a_parameter_is_its_tensor_and_nothing_else():
    data = torch.ones(3)
    assert sp._rebuild_parameter(data, True, collections.OrderedDict(), {"extra": 1}) is data
    assert sp._rebuild_parameter(data, False, None) is data
    with pytest.raises(UnsafeCheckpointError) as err:
        sp._rebuild_parameter([1.0, 2.0], False, None)
    assert str(err.value) == "checkpoint builds a parameter from something that is not a tensor; refused"


def test_stand_ins_are_one_inert_type_per_global_and_keep_what_the_pickle_gave():
    cls = sp.stand_in("ml_collections.config_dict", "ConfigDict")
    assert sp.stand_in("ml_collections.config_dict", "ConfigDict") is cls and cls.__name__ == "ConfigDict"
    assert sp.stand_in("other", "ConfigDict") is not cls
    obj = cls(1, 2, depth=3)
    assert obj.args == (1, 2) and obj.state == {"depth": 3} and obj.qualname == "ml_collections.config_dict.ConfigDict"
    assert repr(obj) == "<StandIn ml_collections.config_dict.ConfigDict>" and cls().state is None
    with pytest.raises(UnsafeCheckpointError) as err:
        obj("anything")
    assert str(err.value) == "checkpoint tried to call ml_collections.config_dict.ConfigDict; refused"
    obj.__setstate__(({"a": 1}, {"b": 2}))  # (dict state, slot state)
    assert obj.attrs() == {"a": 1, "b": 2}
    obj.__setstate__((None, {"b": 2}))
    assert obj.attrs() == {"b": 2}
    obj.__setstate__({"c": 3})
    assert obj.attrs() == {"c": 3}
    for state in ([1, 2], ("x", "y", "z"), ({"a": 1}, "not slots")):
        obj.__setstate__(state)
        assert obj.attrs() == {}


def test_payload_modules_match_by_their_first_dotted_part():
    assert sp.is_payload("os.path", "join") and sp.is_payload("subprocess", "x") and sp.is_payload("importlib.a.b", "x")
    assert not sp.is_payload("timm.os.path", "join") and not sp.is_payload("collections.os", "x")


def test_what_is_not_a_checkpoint_is_one_line(tmp_path):
    with pytest.raises(CheckpointError) as err:
        sp.safe_unpickle(tmp_path / "missing.pth")
    assert str(err.value) == f"{tmp_path / 'missing.pth'}: no such file"
    (tmp_path / "old.pth").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle: the pre-1.6 format
    with pytest.raises(CheckpointError) as err:
        sp.safe_unpickle(tmp_path / "old.pth")
    assert str(err.value) == "old.pth: not a PyTorch zip checkpoint (truncated, or an old/unknown format)"
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(3.0, requires_grad=False)}, good)
    loaded = sp.safe_unpickle(good)
    assert loaded["w"].tolist() == [0.0, 1.0, 2.0] and loaded["w"].device.type == "cpu"
    broken = tmp_path / "broken.pth"
    data = bytearray(good.read_bytes())
    pkl = data.find(b"\x80\x02")
    data[pkl : pkl + 12] = b"\x80\x02X\xff\xff\xff\x7f" + b"\x00" * 5  # a string longer than the file
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        sp.safe_unpickle(broken)
    try:  # what torch itself says about the file, with the standard unpickler
        torch.load(broken, map_location="cpu", weights_only=False)
    except Exception as exc:
        expected = f"broken.pth: unreadable checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    assert str(err.value) == expected
