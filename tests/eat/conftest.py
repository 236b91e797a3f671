"""EAT fixtures: the official reference outputs in ../shared/eat_conformance, loaded once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared_paths import EAT_CONFORMANCE, PHOTOS, eat_fixture


@pytest.fixture(scope="session")
def eat_summary() -> dict:
    eat_fixture()
    return json.loads((EAT_CONFORMANCE / "summary.json").read_text())


@pytest.fixture(scope="session", params=["eat_mini_ava", "eat_mini_tad66k"])
def variant(request, eat_summary) -> dict:
    """One fixture variant: its summary entry plus arrays, checkpoint, config and photo paths."""
    v = next(v for v in eat_summary["variants"] if v["name"] == request.param)
    return {
        **v,
        "npz": dict(np.load(EAT_CONFORMANCE / v["arrays"])),
        "checkpoint_path": EAT_CONFORMANCE / v["checkpoint"],
        "config_path": EAT_CONFORMANCE / v["config"],
        "photos": [PHOTOS / im["file"] for im in v["images"]],
    }


@pytest.fixture(scope="session")
def eat_net(variant):
    """The variant's network loaded by charm's own loader (once per session)."""
    from charmcli.model.eat.checkpoint import load_arch_config, load_eat

    cfg = load_arch_config(variant["config_path"], variant["outputs_per_image"])
    net, _ = load_eat(variant["checkpoint_path"], cfg, variant["model"])
    return net


def photo_paths(variant: dict) -> list[Path]:
    return variant["photos"]
