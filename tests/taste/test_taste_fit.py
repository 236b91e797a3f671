"""Fitting a taste on small synthetic inputs: the measures, the leave-one-out shortcut, the
choice of method, serialization, and the refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from charmcli.taste import MIN_RATINGS, NotEnoughRatings, TasteModel, fit_taste
from charmcli.taste.fit import _ridge, pairwise_accuracy, ranks, spearman
from charmcli.taste.model import TasteFormatError


def _brute_pairwise(pred, stars) -> float:
    right = total = 0.0
    for i, j in itertools.combinations(range(len(stars)), 2):
        if stars[i] == stars[j]:
            continue
        hi, lo = (i, j) if stars[i] > stars[j] else (j, i)
        total += 1
        right += 1.0 if pred[hi] > pred[lo] else 0.5 if pred[hi] == pred[lo] else 0.0
    return right / total


def test_measures_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    stars = rng.integers(-1, 6, 60)
    pred = np.round(rng.normal(size=60), 1)  # rounded: ties in the predictions too
    assert pairwise_accuracy(pred, stars) == pytest.approx(_brute_pairwise(pred, stars))
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    ra, rb = ranks(pred), ranks(stars.astype(float))
    assert spearman(pred, stars) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(pred, np.ones(60)) == 0.0
    assert pairwise_accuracy(-stars.astype(float), stars) == 0.0


def test_ridge_leave_one_out_is_a_real_refit() -> None:
    """The leverage shortcut equals fitting n models, each without one photo, at that strength."""
    rng = np.random.default_rng(5)
    n, d = 24, 40
    P, S = rng.normal(size=(n, d)), rng.normal(size=(n, 1))
    y = rng.integers(0, 6, n).astype(float)
    measured, _coef = _ridge(P, S, y, y.astype(int))

    def residualized(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = np.column_stack([np.ones(rows.sum()), S[rows]])
        return Z, np.eye(len(Z)) - Z @ np.linalg.pinv(Z.T @ Z) @ Z.T, P[rows]

    _z, M, _p = residualized(np.ones(n, dtype=bool))
    alpha = measured.strength * np.trace(P.T @ M @ P) / d  # the strength is relative to all the data

    def fit(rows: np.ndarray) -> np.ndarray:  # the ridge it claims, solved directly
        Z, M, Pr = residualized(rows)
        yr = y[rows]
        Pt = M @ Pr
        w = np.linalg.solve(Pt.T @ Pt + alpha * np.eye(d), Pt.T @ (M @ yr))
        beta = np.linalg.lstsq(Z, yr - Pr @ w, rcond=None)[0]
        return np.r_[w, beta[1:], beta[0]]

    loo = []
    for i in range(n):
        rows = np.arange(n) != i
        coef = fit(rows)
        loo.append(P[i] @ coef[:d] + S[i] @ coef[d:-1] + coef[-1])
    # the measured LOO predictions are not exposed; their Spearman is, and must match
    assert measured.spearman == pytest.approx(spearman(np.array(loo), y.astype(int)), abs=1e-9)


def _shoot(n: int, seed: int, d: int = 64, generic_weight: float = 0.0):
    """Features with a planted taste in 3 columns, plus a generic score column (last)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d + 1))
    rule = X[:, 0] + X[:, 1] - X[:, 2] + generic_weight * X[:, d]
    return X, rule


def _stars(rule: np.ndarray) -> np.ndarray:
    cuts = np.quantile(rule, [0.05, 0.3, 0.6, 0.9])
    stars = 1 + np.searchsorted(cuts, rule)
    return np.where(rule < cuts[0], -1, np.minimum(stars, 5))


@pytest.mark.parametrize("method", ["ridge", "rank"])
def test_a_planted_taste_is_learned(method: str) -> None:
    X, rule = _shoot(400, 1)
    train, test = slice(0, 150), slice(150, None)
    fit = fit_taste(X[train], _stars(rule[train]), layout=[("head", 64), ("score", 1)], free=[64],
                    generic=X[train, 64], methods=(method,))  # fmt: skip
    assert fit.model.method == method
    assert spearman(fit.model.predict(X[test]), rule[test]) > 0.8
    assert fit.chosen.spearman > 0.7 and fit.chosen.pairwise > 0.75
    assert abs(fit.generic.spearman) < 0.3  # the generic score knows nothing of this rule


def test_few_ratings_lean_on_the_generic_score() -> None:
    """The score columns are not penalized: when stars follow the generic score, 20 ratings
    in 200 dimensions are enough to follow it too."""
    X, rule = _shoot(300, 2, d=200, generic_weight=0.0)
    rule = X[:, 200] + 0.05 * rule
    fit = fit_taste(X[:20], _stars(rule[:20]), layout=[("head", 200), ("score", 1)], free=[200],
                    generic=X[:20, 200])  # fmt: skip
    assert spearman(fit.model.predict(X[20:]), rule[20:]) > 0.9


def test_the_better_method_is_kept_and_predicts_stars() -> None:
    X, rule = _shoot(120, 4)
    stars = _stars(rule)
    fit = fit_taste(X, stars, layout=[("head", 65)])
    assert set(fit.methods) == {"ridge", "rank"}
    best = max(fit.methods.values(), key=lambda m: m.spearman)
    assert fit.chosen.spearman == best.spearman
    pred = fit.model.predict(X)
    assert 0.0 < pred.mean() < 5.0 and np.polyfit(pred, np.where(stars < 0, 0, stars), 1)[0] > 0
    assert fit.counts == {int(s): int((stars == s).sum()) for s in np.unique(stars)}


def test_serialized_in_a_few_kilobytes() -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40, 1538)).astype(np.float16)
    stars = rng.integers(1, 6, 40)
    model = fit_taste(X, stars, layout=[("aadb", 768), ("para", 768), ("scores", 2)], free=[1536, 1537]).model
    data = model.to_bytes()
    assert len(data) < 8 * 1024
    back = TasteModel.from_bytes(data)
    assert back.layout == model.layout and back.n_ratings == 40 and back.method == model.method
    assert np.allclose(back.predict(X), model.predict(X))
    with pytest.raises(TasteFormatError):
        TasteModel.from_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="1538 features"):
        model.predict(X[:, :10])


def test_refusals() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(MIN_RATINGS, 5))
    with pytest.raises(NotEnoughRatings, match="rate at least 1 more") as info:
        fit_taste(X[:-1], [3] * (MIN_RATINGS - 2) + [4], layout=[("f", 5)])
    assert info.value.needed == 1
    with pytest.raises(NotEnoughRatings, match="all 20 ratings are the same"):
        fit_taste(X, [4] * MIN_RATINGS, layout=[("f", 5)])
    with pytest.raises(ValueError, match="do not match"):
        fit_taste(X, [1, 2] * 10, layout=[("f", 4)])
