"""Percentile ranks and star ratings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charmcli.cull.groups import PhotoRecord, find_groups
from charmcli.cull.ratings import (
    DEFAULT_BEST_LABEL,
    DEFAULT_STAR_THRESHOLDS,
    REJECTED,
    best_of_group_flags,
    percentile_rank,
    plan_ratings,
    stars_for_percentiles,
)


def test_percentile_is_symmetric_mid_rank():
    scores = np.arange(10, dtype=float)[::-1]  # order of input must not matter
    pct = percentile_rank(scores)
    n = len(scores)
    expected = 100 * (n - 1 - np.arange(n) + 0.5) / n  # rank r (0-based ascending) -> (r + 0.5) / n
    np.testing.assert_allclose(pct, expected)
    assert pct.min() == pytest.approx(100 - pct.max())


def test_ties_share_a_percentile_and_nan_is_nan():
    pct = percentile_rank([1.0, 2.0, 2.0, 3.0, float("nan")])
    assert pct[1] == pct[2]
    assert pct[0] < pct[1] < pct[3]
    assert np.isnan(pct[4])
    # NaN does not count in n: the 4 real scores span the ranks
    assert pct[0] == pytest.approx(100 * 0.5 / 4)


def test_percentile_against_a_reference_library():
    library = np.linspace(0, 1, 101)
    pct = percentile_rank([0.5, -1.0, 2.0], reference=library)
    assert pct[0] == pytest.approx(50.0)
    assert pct[1] == 0.0 and pct[2] == 100.0
    assert np.isnan(percentile_rank([1.0], reference=[])).all()


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200))
def test_percentile_is_monotone_and_bounded(scores):
    pct = percentile_rank(scores)
    assert np.all((pct > 0) & (pct < 100))
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(pct[order]) >= 0)


def test_default_stars_split_a_selection_10_20_40_20_10():
    stars = stars_for_percentiles(percentile_rank(np.random.default_rng(1).uniform(size=1000)))
    counts = np.bincount(stars, minlength=6)[1:]
    lo, mid1, mid2, hi = DEFAULT_STAR_THRESHOLDS
    expected = np.array([lo, mid1 - lo, mid2 - mid1, hi - mid2, 100 - hi]) * 10
    np.testing.assert_array_equal(counts, expected)


def test_custom_thresholds_and_validation():
    pct = np.array([1.0, 49.0, 51.0, 99.0])
    assert stars_for_percentiles(pct, (50, 50, 50, 98)).tolist() == [1, 1, 4, 5]
    assert stars_for_percentiles([np.nan]).tolist() == [0]
    for bad in ((10, 30, 70), (30, 10, 70, 90), (-1, 10, 20, 30), (10, 20, 30, 101)):
        with pytest.raises(ValueError):
            stars_for_percentiles(pct, bad)


def test_plan_rejects_worst_and_labels_best_of_groups():
    rng = np.random.default_rng(3)
    base = rng.standard_normal(8)
    recs = [PhotoRecord(f"b{i}", f"/p/b{i}", 10.0 + i * 0.1, base + 0.01 * rng.standard_normal(8), s)
            for i, s in enumerate([0.2, 0.9, 0.5])]
    recs += [PhotoRecord(f"x{i}", f"/p/x{i}", 1000.0 * (i + 1), rng.standard_normal(8), float(i) / 20)
             for i in range(17)]
    groups = find_groups(recs)
    flags = best_of_group_flags(groups)
    assert flags == {"b0": False, "b1": True, "b2": False}  # singletons are not labelled
    scores = {r.id: r.score for r in recs} | {"unscored": None}
    plans = plan_ratings(scores, reject_below=5.0, best_of_group=flags)
    assert "unscored" not in plans
    worst = min(scores, key=lambda k: scores[k] if scores[k] is not None else np.inf)
    assert plans[worst].stars == REJECTED and plans[worst].percentile < 5
    assert all(p.stars >= 1 for k, p in plans.items() if k != worst)
    assert plans["b1"].label == DEFAULT_BEST_LABEL and plans["b1"].clear_label is None
    assert plans["b0"].label is None and plans["b0"].clear_label == DEFAULT_BEST_LABEL
    assert plans["x3"].label is None and plans["x3"].clear_label is None
    best = max(plans, key=lambda k: plans[k].percentile)
    assert plans[best].stars == 5


def test_plan_without_labels():
    plans = plan_ratings({"a": 1.0, "b": 2.0}, best_of_group={"a": True, "b": False}, best_label=None)
    assert all(p.label is None and p.clear_label is None for p in plans.values())
