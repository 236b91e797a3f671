"""The refusal by name: every global the docs promise to refuse stops a checkpoint, in one line.

The names are read from the documentation (the promise), not from the code's own list, so
dropping one from the code fails here; and every name the code lists is checked too, so a
change to how names are matched fails as well.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
import torch

from charmcli.model import UnsafeCheckpointError
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
