"""The hub when it cannot be reached (the normal case here): one line at once, and local files.

huggingface_hub retries an unreachable host for about half a minute and logs every retry; charm
asks once with a short connection attempt and answers with one line naming the missing file.
These tests point the hub at a closed loopback port, so they never leave the machine, and make
``hf_hub_download`` fail the test if it is reached at all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from charmcli.model import ModelUnavailableError, Scorer
from charmcli.model import registry as reg
from charmcli.model.charm.checkpoint import sha256_file
from charmcli.model.factory import create_scorer

from shared_paths import CONFORMANCE

AUTHORS = CONFORMANCE / "authors"


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Online mode, but the hub is a closed port on loopback; downloading would be a bug."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setattr(reg, "_REACHABLE", {})
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("hf_hub_download was called although the hub is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)


def test_unreachable_hub_is_one_line_naming_the_file(unreachable_hub, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(ModelUnavailableError) as err:
        create_scorer("tad66k", device="cpu")  # what `charm score` builds: the CLI's advice
    msg = str(err.value)
    assert "\n" not in msg and "tad66k_charm.pth" in msg and "unreachable" in msg
    assert "charm models download tad66k" in msg and "CHARM_CHECKPOINT" in msg and "CHARM_POS_EMBED" in msg
    assert not [r for r in caplog.records if r.name.startswith(("huggingface_hub", "httpx", "urllib3"))]


def test_offline_from_pretrained_advises_the_python_api(unreachable_hub):
    with pytest.raises(ModelUnavailableError) as err:
        Scorer.from_pretrained("tad66k", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "unreachable" in msg
    assert "Scorer.from_files('tad66k_charm.pth', 'dino_small_pos.pt')" in msg
    assert "--checkpoint" not in msg and "--pos-embed" not in msg and "CHARM_CHECKPOINT" not in msg


def test_download_command_does_not_suggest_itself(unreachable_hub):
    with pytest.raises(ModelUnavailableError) as err:
        reg.download("aadb")
    assert "charm models download" not in str(err.value) and "aadb_charm.pth" in str(err.value)


def test_offline_mode_never_probes_the_network(monkeypatch):
    import socket

    def no_socket(*args, **kwargs):
        raise AssertionError("a connection was attempted in offline mode")

    monkeypatch.setattr(socket, "create_connection", no_socket)
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        reg.fetch("aadb_charm.pth", "aadb")


def test_the_probe_goes_to_the_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert reg._hub_address() == ("proxy.internal", 3128)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    assert reg._hub_address() == ("hub.example.org", 443)


def test_checkpoint_without_position_table_names_the_table(unreachable_hub):
    ckpt = AUTHORS / "checkpoints" / "aadb_charm.pth"
    if not ckpt.is_file():
        pytest.skip(f"{AUTHORS} is absent")
    with pytest.raises(ModelUnavailableError) as err:
        Scorer.from_files(ckpt, None, device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "dino_small_pos.pt" in msg and "--pos-embed" in msg and "CHARM_POS_EMBED" in msg
    assert "dino_large" not in msg  # a 384-wide checkpoint needs the small table, whatever the name


def hub_cache_with(root, files: dict[str, object]) -> None:
    """Lay files out as huggingface_hub's cache does (refs/main -> snapshots/<rev>/name)."""
    repo = root / "hub" / f"models--{reg.HUB_REPO.replace('/', '--')}"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    for name, source in files.items():
        blob = repo / "blobs" / sha256_file(source)  # large files' blobs are named by their sha256
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, blob)
        target = repo / "snapshots" / rev / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))


def test_cached_hub_files_are_used_without_the_network(unreachable_hub, tmp_path, monkeypatch):
    if not AUTHORS.is_dir():
        pytest.skip(f"{AUTHORS} is absent")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub_cache_with(tmp_path / "hf", {"tad66k_charm.pth": AUTHORS / "checkpoints" / "tad66k_charm.pth",
                                     "dino_small_pos.pt": CONFORMANCE / "dino_small_pos.pt"})  # fmt: skip
    monkeypatch.setenv("CHARM_CACHE_DIR", str(tmp_path / "conv"))
    assert reg.is_cached("tad66k")
    assert reg.expected_head("tad66k") == {"activation": "ReLU", "basis": "inferred", "rule": "raw output (no factor)"}
    scorer = Scorer.from_pretrained("tad66k", device="cpu")
    # once converted, `charm models` reads the head from the file itself
    assert reg.expected_head("tad66k") == {"activation": "ReLU", "basis": "file", "rule": "raw output (no factor)"}
    summary = json.loads((AUTHORS / "summary.json").read_text())
    assert scorer.checkpoint_id == summary["checkpoints"]["tad66k"]["sha256"]
    assert scorer.config.activation == "relu"
    # --checkpoint alone finds the position table in the hub cache too
    alone = Scorer.from_files(AUTHORS / "checkpoints" / "aadb_charm.pth", None, device="cpu",
                              cache_dir=tmp_path / "conv")  # fmt: skip
    assert alone.name == "aadb"


def test_the_hub_reason_is_a_whole_clause_of_charms_sentence(monkeypatch):
    """The hub reachable but the download failing: its text joins charm's sentence lower-case,
    whole words only (it was cut at 160 characters, "…try aga", after a capital "An")."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    said = ("An error happened while trying to locate the file on the Hub and we cannot find the requested "
            "files in the local cache. Please check your connection and try again or make sure your "
            "Internet connection is on.")  # fmt: skip

    def failing_download(*args, **kwargs):
        raise LocalEntryNotFoundError(said)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(reg, "hub_unreachable", lambda timeout=3.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(ModelUnavailableError) as err:
        reg.fetch("aadb_charm.pth", "aadb")
    msg = str(err.value)
    first = said.split(". ")[0]
    assert f", and {first[0].lower()}{first[1:]};" in msg
    assert " An " not in msg and "try aga" not in msg
