"""Fit a photographer's taste: a linear model of their star ratings on stored features.

Two fits on standardized features, each measured on the user's own ratings:

* **ridge**: least squares on the stars (a reject counts as 0 stars) over every feature. One
  eigendecomposition gives every regularization strength in closed form *and* exact
  leave-one-out predictions, so the strength is chosen by leave-one-out at little cost;
* **rank**: a pairwise logistic (RankNet-style) loss on every pair of photos with different
  stars, solved by Newton's method in the rated photos' top principal components, its strength
  chosen by 5-fold cross-validation. It only asks for the right order, which is all a star
  rating promises (4 stars is better than 3, not "one unit" better). Tried up to
  :data:`RANK_MAX` ratings (its cost grows with n²); past that, ridge alone.

The columns named ``free`` (the models' own scores) are not penalized: with few ratings the fit
leans on the generic score, and moves away from it only as far as the ratings demand.

Each is measured by the Spearman correlation of its held-out predictions with the stars (pooled
over all ratings); the better one is kept, ridge on a tie (simpler; it already predicts on the
star scale). Leave-one-out trains on n−1 ratings, 5-fold on 4/5 of them, which favours ridge a
little at small n; both figures are for the strength the same held-out predictions chose, so
slightly optimistic. ``benchmarks/taste.py`` measures on photos that were never rated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from charmcli.taste.model import TasteModel

#: Ratings needed before a taste is learned: fewer cannot be cross-validated meaningfully.
MIN_RATINGS = 20
#: Cross-validation folds (fewer when there are few ratings: each fold keeps at least 4).
FOLDS = 5
#: Ridge strengths tried, as multiples of the mean eigenvalue of the training fold's Gram matrix.
RIDGE_GRID = 10.0 ** np.arange(-3.0, 4.01, 0.5)
#: Pairwise-loss strengths tried (features scaled to unit mean row norm, loss per pair).
RANK_GRID = 10.0 ** np.arange(-6.0, 0.01, 1.0)
#: The ranking fit is tried up to this many ratings: its Newton steps cost n² per iteration, and
#: with more ratings ridge, which learns from all of them at once, is the one to keep.
RANK_MAX = 500
#: Both fits work in the rated photos' top principal components of the penalized features:
#: exact up to this many ratings (the fit lies in the span of the rated photos), and the
#: directions that carry most of the variance beyond.
COMPONENTS = 256


class NotEnoughRatings(ValueError):
    """Too few ratings, or all the same; ``str()`` is the one line to show, ``needed`` how many more."""

    def __init__(self, message: str, have: int, needed: int) -> None:
        super().__init__(message)
        self.have, self.needed = have, needed


@dataclass(frozen=True)
class Measured:
    """How well one ranking of the rated photos agrees with their stars."""

    spearman: float
    pairwise: float  #: share of photo pairs with different stars put in the right order (ties: ½)
    strength: float | None = None  #: the chosen regularization (None for the generic score)


@dataclass
class TasteFit:
    """A fitted taste and what the user needs to trust it."""

    model: TasteModel
    methods: dict[str, Measured]  #: cross-validated, by method name
    generic: Measured | None  #: the generic score on the same ratings (no fitting, no folds)
    counts: dict[int, int] = field(default_factory=dict)  #: stars → photos (-1 = rejected)
    seconds: float = 0.0

    @property
    def chosen(self) -> Measured:
        return self.methods[self.model.method]


# -- measures -----------------------------------------------------------------------------------


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    out = np.empty(values.size)
    out[order] = ((first + last) / 2.0 + 1.0)[group]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties averaged); 0 when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def pairwise_accuracy(predicted: np.ndarray, stars: np.ndarray) -> float:
    """Share of pairs with different stars that ``predicted`` orders the same way (a tie counts ½).

    Exact in O(n log n) per pair of star levels (there are at most 6 levels), so 10,000 ratings
    (50 million pairs) cost milliseconds.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    stars = np.asarray(stars)
    levels = np.unique(stars)
    right = total = 0.0
    for i, low in enumerate(levels):
        below = np.sort(predicted[stars == low])
        for high in levels[i + 1 :]:
            above = predicted[stars == high]
            less = np.searchsorted(below, above, side="left")  # lower-rated photos predicted lower
            equal = np.searchsorted(below, above, side="right") - less
            right += less.sum() + 0.5 * equal.sum()
            total += above.size * below.size
    return float(right / total) if total else 0.5


def measure(predicted: np.ndarray, stars: np.ndarray, strength: float | None = None) -> Measured:
    return Measured(spearman(predicted, stars), pairwise_accuracy(predicted, stars), strength)


# -- the two fits -------------------------------------------------------------------------------


def _target(stars: np.ndarray) -> np.ndarray:
    """Stars as numbers to fit: a reject is below one star."""
    return np.where(stars < 0, 0.0, stars).astype(np.float64)


def _basis(P: np.ndarray, rank: int, seed: int) -> np.ndarray:
    """Top ``rank`` principal directions (columns) of the centered ``P``, from the cheaper side.

    Unsupervised (the ratings play no part), so one basis serves every fold. Exact when the
    data has at most ``rank`` directions; otherwise a randomized range finder (Halko et al.,
    two power iterations), which costs O(n·d·rank) instead of a full d×d eigendecomposition.
    """
    n, d = P.shape
    if min(n, d) <= 2 * rank:
        if n <= d:
            lam, U = np.linalg.eigh(P @ P.T)
            lam, U = lam[::-1], U[:, ::-1]
            keep = lam > max(lam[0], 1e-300) * 1e-10
            V = (P.T @ U[:, keep]) / np.sqrt(lam[keep])
        else:
            lam, V = np.linalg.eigh(P.T @ P)
            lam, V = lam[::-1], V[:, ::-1]
            V = V[:, lam > max(lam[0], 1e-300) * 1e-10]
        return V[:, :rank]
    Q = P.T @ np.random.default_rng(seed).normal(size=(n, rank + 10))  # d × (rank + 10)
    for _ in range(2):
        Q, _r = np.linalg.qr(P.T @ (P @ Q))
    _u, _s, vt = np.linalg.svd(P @ Q, full_matrices=False)
    return (Q @ vt.T)[:, :rank]


def _ridge(P: np.ndarray, S: np.ndarray, y: np.ndarray, stars: np.ndarray) -> tuple[Measured, np.ndarray]:
    """Ridge on every penalized column, its strength chosen by exact leave-one-out.

    ``S`` (the free columns) and the intercept are projected out first (Frisch–Waugh), so the
    penalty touches only ``P``. One eigendecomposition (of the n×n or d×d Gram matrix, whichever
    is smaller) gives, for every strength in closed form, the fit and the leverages, hence each
    photo's prediction from a model fitted without it: ``(ŷᵢ − hᵢᵢ·yᵢ) / (1 − hᵢᵢ)``. Returns the
    measure at the best strength and the coefficients ``[P part, S part, intercept]`` there.
    """
    Z = np.column_stack([np.ones(len(P)), S])
    Zi = np.linalg.pinv(Z.T @ Z)
    hat_z = Z @ (Zi @ (Z.T @ y))
    lev_z = np.einsum("ij,ij->i", Z @ Zi, Z)
    Pt = P - Z @ (Zi @ (Z.T @ P))
    yt = y - hat_z
    n, d = Pt.shape
    if n <= d:
        lam, U = np.linalg.eigh(Pt @ Pt.T)
    else:
        lam, V = np.linalg.eigh(Pt.T @ Pt)
        live = lam > max(float(lam.max()), 1e-300) * 1e-12
        U = (Pt @ V[:, live]) / np.sqrt(lam[live])
        lam, V = lam[live], V[:, live]
    lam = np.maximum(lam, 0.0)
    uy = U.T @ yt
    U2 = U * U
    scale = max(float(lam.sum()) / max(d, 1), 1e-12)
    best: tuple[float, float, np.ndarray] | None = None
    for factor in RIDGE_GRID:
        shrink = lam / (lam + factor * scale)
        fitted = hat_z + U @ (shrink * uy)
        lev = np.minimum(lev_z + U2 @ shrink, 1.0 - 1e-9)
        loo = (fitted - lev * y) / (1.0 - lev)
        rho = round(spearman(loo, stars), 6)
        if best is None or rho >= best[0]:  # ties: the stronger (later in the grid)
            best = (rho, float(factor), loo)
    assert best is not None
    _rho, factor, loo = best
    alpha = factor * scale
    w = Pt.T @ (U @ (uy / (lam + alpha))) if n <= d else V @ ((V.T @ (Pt.T @ yt)) / (lam + alpha))
    beta = Zi @ (Z.T @ (y - P @ w))
    return measure(loo, stars, factor), np.r_[w, beta[1:], beta[0]]


def _rank_path(T: np.ndarray, S: np.ndarray, y: np.ndarray, strengths: Sequence[float]) -> list[np.ndarray]:
    """Coefficients (as :func:`_ridge_path`) of the pairwise logistic fit per strength.

    The Hessian of the pairwise loss is ``CᵀLC`` with L the weighted Laplacian of the pair graph,
    so each Newton step costs O(n²·k) and needs no list of pairs. Strengths are visited from
    strongest to weakest, each warm-started from the last; the free columns are barely penalized.
    """
    k = T.shape[1]
    norm = np.sqrt(max(float((T * T).sum()) / max(len(T), 1), 1e-12))  # rows of unit mean norm
    mean = np.r_[T.mean(axis=0), S.mean(axis=0)]
    C = np.column_stack([T / norm, S]) - np.r_[T.mean(axis=0) / norm, S.mean(axis=0)]
    pen_mask = np.r_[np.ones(k), np.full(S.shape[1], 1e-6)]
    better = (y[:, None] > y[None, :]).astype(np.float64)  # better[i, j]: i was rated above j
    pairs = max(float(better.sum()), 1.0)
    theta = np.zeros(C.shape[1])
    found: dict[float, np.ndarray] = {}
    for strength in sorted(strengths, reverse=True):
        pen = strength * pen_mask

        def loss(t: np.ndarray, pen: np.ndarray = pen) -> float:
            f = C @ t
            return float((better * np.logaddexp(0.0, f[None, :] - f[:, None])).sum() / pairs + 0.5 * (pen * t * t).sum())

        current = loss(theta)
        for _ in range(30):
            f = C @ theta
            sig = 0.5 * (1.0 - np.tanh(0.5 * (f[:, None] - f[None, :])))  # σ(−margin): how wrong each pair still is
            a = better * sig / pairs
            grad = C.T @ (a.sum(axis=0) - a.sum(axis=1)) + pen * theta
            w = better * sig * (1.0 - sig) / pairs
            w = w + w.T
            hess = C.T @ (w.sum(axis=1)[:, None] * C - w @ C) + np.diag(pen)
            step = np.linalg.solve(hess + 1e-12 * np.eye(len(theta)), grad)
            t = 1.0
            while t > 1e-4:
                candidate = theta - t * step
                new = loss(candidate)
                if new <= current - 1e-4 * t * float(grad @ step):
                    break
                t *= 0.5
            else:
                break
            theta, done = candidate, current - new < 1e-8 * max(current, 1e-12)
            current = new
            if done:
                break
        coef = np.r_[theta[:k] / norm, theta[k:], 0.0]
        coef[-1] = -float(mean @ coef[:-1])
        found[strength] = coef
    return [found[s] for s in strengths]


def _predict(T: np.ndarray, S: np.ndarray, coef: np.ndarray) -> np.ndarray:
    return T @ coef[: T.shape[1]] + S @ coef[T.shape[1] : -1] + coef[-1]


def _folds(n: int, seed: int) -> np.ndarray:
    """Fold number of each rating: a fixed shuffle, so a re-run on the same ratings agrees."""
    k = max(2, min(FOLDS, n // 4))
    return np.random.default_rng(seed).permutation(n) % k


def _rank(T: np.ndarray, S: np.ndarray, y: np.ndarray, stars: np.ndarray, seed: int) -> tuple[Measured, np.ndarray]:
    """The pairwise fit, its strength chosen by k-fold cross-validation (pooled out-of-fold
    Spearman); the measure there and the coefficients refitted on all of ``T``/``S``."""
    folds = _folds(len(y), seed)
    oof = np.zeros((len(RANK_GRID), len(y)))
    for fold in np.unique(folds):
        test = folds == fold
        for i, coef in enumerate(_rank_path(T[~test], S[~test], y[~test], RANK_GRID)):
            oof[i, test] = _predict(T[test], S[test], coef)
    scores = [round(spearman(oof[i], stars), 6) for i in range(len(RANK_GRID))]
    best = max(range(len(RANK_GRID)), key=lambda i: (scores[i], RANK_GRID[i]))  # tie: the stronger
    strength = float(RANK_GRID[best])
    return measure(oof[best], stars, strength), _rank_path(T, S, y, [strength])[0]


def check_ratings(stars: Sequence[int]) -> None:
    """Raise :class:`NotEnoughRatings` unless there are enough ratings, and not all the same."""
    n = len(stars)
    if n < MIN_RATINGS:
        raise NotEnoughRatings(
            f"{n} rating(s) found; rate at least {MIN_RATINGS - n} more photo(s) "
            f"(a taste needs {MIN_RATINGS})", n, MIN_RATINGS - n)  # fmt: skip
    if len(set(stars)) < 2:
        raise NotEnoughRatings(
            f"all {n} ratings are the same ({stars[0]}); rate at least 1 photo higher or lower", n, 1
        )


def fit_taste(
    features: np.ndarray,
    stars: Sequence[int],
    *,
    layout: Sequence[tuple[str, int]],
    free: Sequence[int] = (),
    generic: np.ndarray | None = None,
    methods: Sequence[str] = ("ridge", "rank"),
    seed: int = 0,
) -> TasteFit:
    """Learn a taste from ``features`` (one row per rated photo) and their ``stars`` (-1, 1..5).

    ``layout`` names the feature blocks in column order (stored with the model, so predictions
    are only made from the same kind of features); ``free`` are unpenalized columns (the
    models' scores); ``generic`` is the generic score of the same photos, measured beside.
    """
    started = time.perf_counter()
    stars_arr = np.asarray(stars, dtype=np.int64)
    check_ratings(stars_arr.tolist())
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(stars_arr) or X.shape[1] != sum(width for _n, width in layout):
        raise ValueError(f"features {X.shape} do not match {len(stars_arr)} ratings and the layout")
    pen = np.ones(X.shape[1], dtype=bool)
    pen[list(free)] = False
    mean = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd < 1e-12] = 1.0
    Xs = (X - mean) / sd
    P, S = Xs[:, pen], Xs[:, ~pen]
    y = _target(stars_arr)
    measured: dict[str, Measured] = {}
    coefs: dict[str, np.ndarray] = {}  # [penalized, free, intercept] on the standardized features
    methods = [m for m in methods if m != "rank" or len(y) <= RANK_MAX]
    for method in methods:
        if method == "ridge":
            measured[method], coefs[method] = _ridge(P, S, y, stars_arr)
        elif method == "rank":
            V = _basis(P, COMPONENTS, seed)  # P is centered: standardized over the rated photos
            measured[method], coef = _rank(P @ V, S, y, stars_arr, seed)
            coefs[method] = np.r_[V @ coef[: V.shape[1]], coef[V.shape[1] :]]
        else:
            raise ValueError(f"unknown taste method {method!r}")
    chosen = max(methods, key=lambda m: (measured[m].spearman, m == "ridge"))
    coef = coefs[chosen]
    d = P.shape[1]
    f = P @ coef[:d] + S @ coef[d:-1] + coef[-1]
    # Calibrate onto the star scale (ridge is already close; the ranking's scale is arbitrary).
    a, b = np.polyfit(f, y, 1) if np.ptp(f) > 0 else (0.0, float(y.mean()))
    a = max(float(a), 1e-9)
    std_weights = np.empty(X.shape[1])
    std_weights[pen] = coef[:d]
    std_weights[~pen] = coef[d:-1]
    weights = a * std_weights / sd
    bias = a * (coef[-1] - float((std_weights / sd) @ mean)) + float(b)
    counts = {int(s): int(c) for s, c in zip(*np.unique(stars_arr, return_counts=True), strict=True)}
    model = TasteModel(
        method=chosen, strength=float(measured[chosen].strength or 0.0), layout=[(n, int(w)) for n, w in layout],
        weights=weights.astype(np.float32), bias=float(bias), n_ratings=len(y), counts=counts,
        cv_spearman=measured[chosen].spearman, cv_pairwise=measured[chosen].pairwise,
        generic_spearman=None if generic is None else spearman(np.asarray(generic, float), stars_arr),
        generic_pairwise=None if generic is None else pairwise_accuracy(np.asarray(generic, float), stars_arr),
    )  # fmt: skip
    gen = None if generic is None else measure(np.asarray(generic, dtype=np.float64), stars_arr)
    return TasteFit(model=model, methods=measured, generic=gen, counts=counts,
                    seconds=time.perf_counter() - started)  # fmt: skip
