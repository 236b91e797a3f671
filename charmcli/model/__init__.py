"""The model side: families of scoring networks behind one face, built by name.

Nothing here touches photo folders, databases or the CLI: it turns decoded RGB images into
scores. Entry point: :class:`Scorer` (``Scorer.from_pretrained(name)``, ``Scorer.from_files``),
the face every family implements (:mod:`.base`); :func:`create_scorer` (:mod:`.factory`) builds
one by name. Each family keeps its specs, network and loaders in its own package
(:mod:`.charm`, :mod:`.eat`).

The registry and the errors import without torch, so a CLI run that finds everything cached
never pays for importing torch; the rest loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from charmcli.model.errors import CheckpointError, ModelUnavailableError, UnsafeCheckpointError
from charmcli.model.registry import DEFAULT_MODEL, MODEL_NAMES, MODELS, ModelSpec, get_spec

if TYPE_CHECKING:
    from charmcli.model.base import Preparer, Scorer, ScoreResult
    from charmcli.model.charm.scorer import CharmScorer
    from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable, Tokenized
    from charmcli.model.eat.scorer import EatScorer
    from charmcli.model.factory import create_preparer, create_scorer

_LAZY = {
    "Scorer": "charmcli.model.base",
    "Preparer": "charmcli.model.base",
    "ScoreResult": "charmcli.model.base",
    "CharmScorer": "charmcli.model.charm.scorer",
    "CharmTokenizer": "charmcli.model.charm.tokenizer",
    "PositionTable": "charmcli.model.charm.tokenizer",
    "Tokenized": "charmcli.model.charm.tokenizer",
    "EatScorer": "charmcli.model.eat.scorer",
    "create_scorer": "charmcli.model.factory",
    "create_preparer": "charmcli.model.factory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MODEL_NAMES",
    "CharmScorer",
    "CharmTokenizer",
    "CheckpointError",
    "EatScorer",
    "ModelSpec",
    "ModelUnavailableError",
    "PositionTable",
    "Preparer",
    "ScoreResult",
    "Scorer",
    "Tokenized",
    "UnsafeCheckpointError",
    "create_preparer",
    "create_scorer",
    "get_spec",
]
