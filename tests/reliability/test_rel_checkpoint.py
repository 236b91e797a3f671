"""Guarantee 5 at the CLI: a checkpoint never runs code, and a bad one is one line, exit 2.

tests/model/test_checkpoint.py proves the loader refuses hostile pickles of every kind; this
proves the command line around it: ``charm score --checkpoint evil.pth`` stops before scoring
anything, says why in one line, and the payload's marker file never appears.
"""

from __future__ import annotations

import builtins
import json
import os

import pytest
import torch
from rel_helpers import make_photo

from official_format import build_official_model, save_official, save_pos_table
from shared_paths import CONFORMANCE


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def photos(tmp_path):
    for i in range(2):
        make_photo(tmp_path / "lib" / f"{i}.jpg", seed=i)
    return tmp_path / "lib"


def _one_line_exit_2(result, *words):
    assert result.exit_code == 2, result.stderr
    text = result.stderr.strip()
    assert text.count("\n") == 0 and text.startswith("charm: error:") and "Traceback" not in text, text
    for word in words:
        assert word in text, text


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: {"model_state_dict": _Payload(os.system, f"touch {m}"), "epoch": 0},
        lambda m: {"model_state_dict": _Payload(builtins.exec, f"open({str(m)!r}, 'w')"), "epoch": 0},
        lambda m: _Payload(os.system, f"touch {m}"),  # the whole file is the payload
    ],
    ids=["os.system", "exec", "bare"],
)
def test_evil_checkpoint_runs_nothing_one_line_exit_2(cli, photos, tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save(payload(marker), evil)
    pos = CONFORMANCE / "dino_small_pos.pt"
    if not pos.is_file():
        pytest.skip(f"{CONFORMANCE} is absent")
    for command in (["score", photos], ["compare", photos / "0.jpg", photos / "1.jpg"]):
        # With its position table the loader opens the file and refuses it by name; without one
        # the command stops earlier (no table to pair it with): either way nothing runs.
        result = cli(*command, "--checkpoint", evil, "--pos-embed", pos, "--device", "cpu")
        _one_line_exit_2(result, "refused")
        _one_line_exit_2(cli(*command, "--checkpoint", evil, "--device", "cpu"))
        assert not marker.exists()
    assert json.loads(cli("stats", "--json").stdout)["photos"] == 0  # nothing was scored or recorded


def test_payload_inside_a_real_model_runs_nothing(cli, photos, tmp_path):
    marker = tmp_path / "pwned"
    model = build_official_model(dim=32, depth=1, heads=2)
    model.mlp_head.extra = _Payload(os.system, f"touch {marker}")
    ckpt = save_official(model, tmp_path / "m.pth")
    pos = save_pos_table(tmp_path / "p32.pt", 32)
    _one_line_exit_2(cli("score", photos, "--checkpoint", ckpt, "--pos-embed", pos, "--device", "cpu"), "refused")
    assert not marker.exists()


def test_truncated_and_garbage_checkpoints_and_wrong_position_table(cli, photos, tmp_path):
    real = CONFORMANCE / "checkpoints" / "aadb_charm.pth"
    pos = CONFORMANCE / "dino_small_pos.pt"
    if not real.is_file():
        pytest.skip(f"{CONFORMANCE} is absent")
    data = real.read_bytes()
    for name, content in {"cut.pth": data[: len(data) // 2], "tail.pth": data[:-1000], "empty.pth": b"",
                          "text.pth": b"<html>404</html>\n", "cut.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{"}.items():  # fmt: skip
        (tmp_path / name).write_bytes(content)
        _one_line_exit_2(
            cli("score", photos, "--checkpoint", tmp_path / name, "--pos-embed", pos, "--device", "cpu")
        )
    narrow = save_pos_table(tmp_path / "p32.pt", 32)  # the checkpoint is 384 wide
    _one_line_exit_2(
        cli("score", photos, "--checkpoint", real, "--pos-embed", narrow, "--device", "cpu"), "width"
    )
    (tmp_path / "cut_pos.pt").write_bytes(pos.read_bytes()[:400])
    _one_line_exit_2(
        cli("score", photos, "--checkpoint", real, "--pos-embed", tmp_path / "cut_pos.pt", "--device", "cpu")
    )
    assert json.loads(cli("stats", "--json").stdout)["photos"] == 0
