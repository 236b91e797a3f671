"""EAT weights the user brings: plain state dicts only, one-line errors for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charmcli.model.eat.checkpoint import load_arch_config, load_eat, read_state_dict
from charmcli.model.eat.scorer import EatScorer
from charmcli.model.errors import (
    EAT_WEIGHTS_URL,
    CheckpointError,
    ModelUnavailableError,
    UnsafeCheckpointError,
)

from shared_paths import eat_fixture

MARKER = "charm_eat_pickle_ran"


class _Payload:
    """Pickles as a call to ``Path.touch``: loading it would create the marker file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.fixture(scope="module")
def mini_state() -> dict[str, torch.Tensor]:
    ckpt, _ = eat_fixture("ava")
    return torch.load(ckpt, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def mini_cfg():
    _, config = eat_fixture("ava")
    return load_arch_config(config, 10)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.strip() == text and text
    return text


def test_a_pickle_with_code_is_refused_and_nothing_runs(tmp_path, mini_state, mini_cfg):
    target = tmp_path / MARKER
    bad = dict(mini_state)
    bad["cls_head.extra"] = _Payload(target)  # type: ignore[assignment]
    path = tmp_path / "evil.pth"
    torch.save(bad, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_eat(path, mini_cfg, "eat-ava")
    assert "refused" in _one_line(info.value)
    assert not target.exists()
    # control: the payload really runs when unpickled without the restriction
    torch.load(path, weights_only=False)
    assert target.exists()


def test_a_whole_pickled_module_is_refused(tmp_path, mini_cfg):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_eat(path, mini_cfg, "eat-ava")
    _one_line(info.value)


def test_missing_file_says_where_the_authors_publish_and_which_file(tmp_path, mini_cfg):
    with pytest.raises(CheckpointError) as info:
        load_eat(tmp_path / "nope.pth", mini_cfg, "eat-ava", "AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth")
    text = _one_line(info.value)
    assert EAT_WEIGHTS_URL in text and "AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth" in text


def test_no_file_in_the_models_folder_is_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARM_MODELS_DIR", str(tmp_path / "models"))
    for name, file in (("eat-ava", "AVA_AOT_"), ("eat-tad66k", "TAD66K_AOT_")):
        with pytest.raises(ModelUnavailableError) as info:
            EatScorer.from_pretrained(name, device="cpu")
        text = _one_line(info.value)
        assert EAT_WEIGHTS_URL in text and file in text and str(tmp_path / "models") in text


def test_the_models_folder_is_used_under_the_published_name(tmp_path, monkeypatch):
    ckpt, config = eat_fixture("tad66k")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "TAD66K_AOT_vacc_0.6882_srcc_0.5171_vlcc_0.5460.pth").symlink_to(ckpt)
    monkeypatch.setenv("CHARM_MODELS_DIR", str(folder))
    scorer = EatScorer.from_pretrained("eat-tad66k", device="cpu", arch_config=config)
    assert scorer.name == "eat-tad66k" and scorer.config.num_classes == 1


def test_a_wrong_shaped_tensor_is_named(tmp_path, mini_state, mini_cfg):
    bad = dict(mini_state)
    bad["stages.2.attns.1.rpe_table"] = torch.zeros(4, 3, 3)
    path = tmp_path / "wrong.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as info:
        load_eat(path, mini_cfg, "eat-ava")
    text = _one_line(info.value)
    assert "stages.2.attns.1.rpe_table" in text and "(4, 3, 3)" in text and "--arch-config" in text


def test_missing_and_unexpected_keys_are_counted(tmp_path, mini_state, mini_cfg):
    bad = {k: v for k, v in mini_state.items() if not k.startswith("stages.3.")}
    bad["not.a.key"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as info:
        load_eat(path, mini_cfg, "eat-ava")
    text = _one_line(info.value)
    assert "missing (first stages.3." in text and "1 unexpected (first not.a.key)" in text


def test_the_default_dat_base_config_rejects_the_mini_file(mini_cfg):
    ckpt, _ = eat_fixture("ava")
    with pytest.raises(CheckpointError) as info:
        load_eat(ckpt, load_arch_config(None, 10), "eat-ava")
    assert "wrong shape" in _one_line(info.value)


def test_the_head_size_points_at_the_other_variant(mini_cfg):
    ckpt, _ = eat_fixture("tad66k")
    with pytest.raises(CheckpointError) as info:
        load_eat(ckpt, mini_cfg, "eat-ava")  # mini_cfg has the AVA head (10)
    assert "eat-tad66k" in _one_line(info.value)


def test_wrapped_and_dataparallel_state_dicts_load(tmp_path, mini_state):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in mini_state.items()}, "epoch": torch.tensor(3)}, path)
    state = read_state_dict(path)
    assert set(state) == set(mini_state)


def test_not_a_checkpoint_is_one_line(tmp_path, mini_cfg):
    path = tmp_path / "photo.pth"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a torch file")
    with pytest.raises(CheckpointError) as info:
        load_eat(path, mini_cfg, "eat-ava")
    _one_line(info.value)


def test_checkpoint_id_depends_on_the_architecture(tmp_path):
    """Same weights under another (compatible) config score differently: another cache key."""
    ckpt, config = eat_fixture("ava")
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("offset_range_factor: [-1, -1, 2, 2]", "offset_range_factor: [-1, -1, 3, 3]"))
    _, a = load_eat(ckpt, load_arch_config(config, 10), "eat-ava")
    _, b = load_eat(ckpt, load_arch_config(other, 10), "eat-ava")
    assert a != b


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("MODEL: [unclosed", "not valid YAML"),
        ("TRAIN:\n  EPOCHS: 3\n", "no MODEL.DAT"),
        ("MODEL:\n  TYPE: swin\n  DAT: {}\n", "only 'dat'"),
        ("MODEL:\n  DAT:\n    depths: [2, 2]\n", "4 entries"),
        ("MODEL:\n  DAT:\n    stage_spec: [[L, S], [L, S], [L, X] , [L, D]]\n    depths: [2, 2, 2, 2]\n", "unknown stage_spec"),
    ],
)
def test_bad_arch_configs_are_one_line(tmp_path, text, needle):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(CheckpointError) as info:
        load_arch_config(path, 10)
    assert needle in _one_line(info.value)


def test_official_configs_parse(tmp_path):
    """The format of the official dat_base.yaml (training sections included) builds dat_base."""
    text = """MODEL:
  TYPE: dat
  NAME: dat_base
  DAT:
    img_size: 224
    patch_size: 4
    num_classes: 10
    expansion: 4
    dim_stem: 128
    dims: [128, 256, 512, 1024]
    depths: [2, 2, 18, 2]
    stage_spec: [[L, S], [L, S], [L, D, L, D, L, D, L, D, L, D, L, D, L, D, L, D, L, D], [L, D]]
    heads: [4, 8, 16, 32]
    window_sizes: [7, 7, 7, 7]
    groups: [-1, -1, 4, 8]
    use_pes: [False, False, True, True]
    dwc_pes: [False, False, False, False]
    strides: [-1, -1, 1, 1]
    sr_ratios: [-1, -1, -1, -1]
    offset_range_factor: [-1, -1, 2, 2]
    no_offs: [False, False, False, False]
    fixed_pes: [False, False, False, False]
    use_dwc_mlps: [False, False, False, False]
    use_conv_patches: False
    drop_rate: 0.0
    attn_drop_rate: 0.0
    drop_path_rate: 0.5
TRAIN:
  EPOCHS: 300
"""
    path = tmp_path / "dat_base.yaml"
    path.write_text(text)
    assert load_arch_config(path, 1) == load_arch_config(None, 1)
