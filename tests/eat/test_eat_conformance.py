"""EAT against the official code's outputs (../shared/eat_conformance): inputs, logits, scores,
sampling positions and reference points, each image alone; and what batching does."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from charmcli.library.decode import load_image
from charmcli.model.eat.preprocess import EatPreprocess
from charmcli.model.registry import get_spec

TOL = 1e-4  # the README's tolerance, per image, absolute (see its "Tolerances")


def _inputs(variant: dict) -> list[torch.Tensor]:
    """Each photo through charm's exact decode and this variant's official preprocessing."""
    pre = EatPreprocess(get_spec(variant["model"]).resample)
    return [pre(load_image(p, exact=True).image) for p in variant["photos"]]


def test_preprocessing_is_bit_exact(variant):
    for x, im, ref in zip(_inputs(variant), variant["images"], variant["npz"]["inputs"], strict=True):
        assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == im["input_sha256"], im["file"]
        assert np.array_equal(x.numpy(), ref)


def test_the_two_variants_resample_differently(eat_summary):
    """AVA squashes with Pillow's bicubic, TAD66K with bilinear: the tensors must differ."""
    from shared_paths import PHOTOS

    image = load_image(PHOTOS / eat_summary["images"][0]["file"], exact=True).image
    ava, tad = EatPreprocess("bicubic")(image), EatPreprocess("bilinear")(image)
    assert float((ava - tad).abs().max()) > 0.01


def test_logits_and_scores_each_image_alone(variant, eat_net):
    spec = get_spec(variant["model"])
    npz = variant["npz"]
    factor = 10.0 if spec.name == "eat-tad66k" else 1.0  # charm reports TAD66K on its 10-point scale
    with torch.inference_mode():
        for i, x in enumerate(_inputs(variant)):
            logits, _ = eat_net(x[None])
            assert np.abs(logits[0].numpy() - npz["logits_batch1"][i]).max() <= TOL, variant["images"][i]["file"]
            score = float(spec.to_score(logits)[0])
            assert abs(score - factor * npz["score_batch1"][i]) <= factor * TOL, variant["images"][i]["file"]


def test_sampling_positions_and_reference_points(variant, eat_net):
    """Every deformable block's sampling positions and EAT's learned references, per image."""
    npz = variant["npz"]
    x = torch.from_numpy(npz["inputs"])
    keys = sorted(k[len("batch1.") :] for k in npz if k.startswith("batch1."))
    assert keys, "the fixture has no position arrays"
    with torch.inference_mode():
        for i in range(x.shape[0]):
            trace: dict = {}
            eat_net(x[i : i + 1], trace=trace)
            assert sorted(k for k in trace if not k.endswith(".offset")) == keys
            for k in keys:
                np.testing.assert_allclose(trace[k][0].numpy(), npz["batch1." + k][i], atol=1e-5, rtol=0)


def test_batching_does_not_move_a_photo_score(variant, eat_net):
    """charm's batches give every image what it gets alone (its own reference map)."""
    npz = variant["npz"]
    with torch.inference_mode():
        logits, _ = eat_net(torch.from_numpy(npz["inputs"]))
    assert np.abs(logits.numpy() - npz["logits_batch1"]).max() <= TOL


def test_official_batch_mean_is_reproduced_when_asked(variant, eat_net):
    """With the official batch-mean references, the batch-of-6 and first-3 outputs match too,
    and they really differ from the alone outputs (so the test above is not vacuous)."""
    npz = variant["npz"]
    x = torch.from_numpy(npz["inputs"])
    with torch.inference_mode():
        six, _ = eat_net(x, batch_mean_reference=True)
        three, _ = eat_net(x[:3], batch_mean_reference=True)
    assert np.abs(six.numpy() - npz["logits_batch6"]).max() <= TOL
    assert np.abs(three.numpy() - npz["logits_batch3_first3"]).max() <= TOL
    assert np.abs(npz["logits_batch6"] - npz["logits_batch1"]).max() > 100 * TOL


def test_the_recorded_near_tie_is_decided_like_the_official_code(eat_summary):
    """The one sign decision within float noise of zero (README): chelsea, stages.2.attns.3.
    Its AVA score matches to 1e-4, so charm takes the same side of the tie."""
    ties = next(v for v in eat_summary["variants"] if v["name"] == "eat_mini_ava")["sign_threshold_margins"]
    assert ties["n_near_ties"] == len(ties["near_ties"]) >= 1
    tie = ties["near_ties"][0]
    assert tie["score_change_if_inverted"] > 10 * TOL  # inverting it would fail the tolerance


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_keeps_the_tolerance(variant, eat_net, threads):
    """Scores with 1 or 2 threads both stay within the tolerance (sign ties included)."""
    spec = get_spec(variant["model"])
    factor = 10.0 if spec.name == "eat-tad66k" else 1.0
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            x = torch.from_numpy(variant["npz"]["inputs"])
            scores = [float(spec.to_score(eat_net(x[i : i + 1])[0])[0]) for i in range(x.shape[0])]
    finally:
        torch.set_num_threads(before)
    assert np.abs(np.array(scores) - factor * variant["npz"]["score_batch1"]).max() <= factor * TOL
