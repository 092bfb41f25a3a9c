"""Statistics the notebooks report (analysis layer): separation of two classes by a score, confidence
intervals, quantile level sets and diversity.

* ``auroc(scores, labels)``: the area under the ROC curve, ``P(X > Y) + P(X = Y) / 2`` for a random positive
  ``X`` and a random negative ``Y`` (the Mann-Whitney U statistic with mid-ranks for ties, divided by
  ``n_pos * n_neg``); ``auroc_ci``: with a stratified bootstrap percentile interval; ``auroc_table``: both
  for several scores; ``tpr_at_fpr``: the true-positive rate at a fixed false-positive rate (ROC curve
  interpolated linearly between its vertices); ``detector_table``: AUROC with CI, TPR at 1% FPR and seconds
  per sample of several detectors on the same samples (issue 16's head-to-head table).
* ``mean_ci`` (Student t), ``diff_ci`` (Welch), ``band`` (mean and t band of a column per x value).
* ``level_sets``: quantile bins of a descriptor; ``vendi`` / ``vendi_per_level``: the Vendi score
  (Friedman & Dieng 2023, ``vendi-score`` package) of a cosine-similarity kernel (unit diagonal), per level set;
  ``vendi_trend``: the direction of Vendi across level sets, from equal-size subsets of each.
* ``brightness_contrast`` (per-image mean and standard deviation of the pixels) and ``spearman_ci`` (rank
  correlation with a bootstrap interval): the named control for a descriptor or a diversity score that may
  only follow brightness and contrast.
* Sub-populations of a paired design (the same units, e.g. latents, measured in every group, e.g. every class
  of a conditional generator; Humayun et al. Fig. 13): ``group_tests`` (Kruskal-Wallis and Friedman),
  ``paired_comparisons`` (every pair: mean paired difference, paired probability of superiority and AUROC, with
  bootstrap CIs over units, and the Wilcoxon signed-rank test), ``holm`` (family-wise adjusted p-values),
  ``variance_shares`` (group vs unit sums of squares), ``half_samples`` and ``diversity_by_group`` (Vendi per
  group with half-sample intervals, and whether higher-scoring groups are more diverse).
* ``frechet_distance`` (FID's formula, Heusel et al. 2017, on any features), ``frechet_distance_ci`` (with a
  bootstrap interval), ``frechet_distance_gaussians`` (the closed form between two Gaussians);
  ``TooFewSamplesError`` for a feature set too small for a covariance.

Labels are binary ``(N,)`` arrays (``0/1`` or bool, ``1`` = positive); scores ``(N,)`` finite floats. Every
function that takes labels checks them the same way (``_labels``): NaN / None labels and any other value set
(``{1, 2}``, ``{-1, 1}``, strings) raise a ``ValueError`` that names the values found and how to map them
(e.g. ``labels == "ood"``), never a number with missing labels counted as positives.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from . import seeds

__all__ = ["auroc", "auroc_ci", "auroc_table", "tpr_at_fpr", "detector_table", "spread_subset", "mean_ci", "diff_ci", "band", "level_sets",
           "vendi", "vendi_per_level", "vendi_trend", "vendi_trend_table", "brightness_contrast", "spearman_ci", "VENDI_UNIT_NORM_TOL",
           "holm", "group_tests", "paired_comparisons", "variance_shares", "half_samples", "diversity_by_group",
           "TooFewSamplesError", "frechet_distance_gaussians", "frechet_distance", "frechet_distance_ci"]


# ------------------------------------------------------------------------------------------ ROC
def _labels(labels) -> np.ndarray:
    """Binary ``labels`` ``(N,)`` as a bool array (``True`` = positive), checked: the one validation of labels
    behind every function here that takes them (``auroc``, ``auroc_ci``, ``auroc_table``, ``tpr_at_fpr``,
    ``detector_table``). Accepted: bool, and numbers that are all ``0`` or ``1`` (ints, floats ``0.0 / 1.0``,
    an object array or pandas Series of those, a pandas ``"boolean"`` Series without ``NA``). Refused with a
    ``ValueError`` that says what was found and how to map it: missing labels (NaN, None, ``pd.NA``: a missing
    label is neither class, and ``bool(nan)`` is ``True``), and every other value set, also two-class ones
    such as ``{1, 2}``, ``{-1, 1}`` or ``{"id", "ood"}`` (which of the two is positive is the caller's choice,
    e.g. ``labels == "ood"``; scikit-learn's ``roc_curve`` refuses ``{1, 2}`` and strings without a
    ``pos_label`` for the same reason)."""
    y = np.asarray(labels)
    y = y.reshape(-1)
    if y.dtype == bool:
        return y
    missing = np.flatnonzero(pd.isna(y)) if y.dtype.kind in "fcOMm" else np.zeros(0, int)
    if missing.size:
        rows = missing[:10].tolist()
        raise ValueError(f"labels contain {missing.size} missing value(s) (NaN / None) at rows {rows}"
                         f"{' ...' if missing.size > 10 else ''} of {y.size}: a missing label is neither class "
                         "(bool(nan) is True); drop those rows from labels and scores together, e.g. "
                         "keep = ~pd.isna(labels), before computing the AUROC")
    vals = list(pd.unique(y))
    numeric = all(isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) for v in vals)
    if not (numeric and all(v == 0 or v == 1 for v in vals)):
        try:
            vals = sorted(vals)
        except TypeError:  # mixed types: keep the order of appearance
            pass
        vals = [v.item() if isinstance(v, np.generic) else v for v in vals]
        shown = ", ".join(map(repr, vals[:10])) + (", ..." if len(vals) > 10 else "")
        how = (f"labels == {vals[-1]!r} if {vals[-1]!r} is the positive class" if len(vals) == 2 else
               f"np.isin(labels, [...the positive values...]), or labels >= threshold")
        raise ValueError(f"labels must be binary (0/1 or bool, 1 = positive), found {len(vals)} distinct "
                         f"value(s) {{{shown}}} (dtype {y.dtype}); map them to the positive class yourself, "
                         f"e.g. {how}")
    return np.asarray(y == 1, dtype=bool)


def _scores(scores, n: int, name: str = "scores") -> np.ndarray:
    """``scores`` ``(n,)`` as float64, checked: numbers, ``n`` of them (one per label), all finite."""
    try:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numbers, got {type(scores).__name__} that numpy cannot convert to "
                         f"float ({e})") from None
    if s.size != n:
        raise ValueError(f"{name} has {s.size} values for {n} labels (lengths differ): scores and labels must "
                         "be the same samples, in the same order")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"{name}: {bad.size} NaN or inf value(s) at rows {bad[:10].tolist()}"
                         f"{' ...' if bad.size > 10 else ''} of {n}: fix their computation, or drop those rows "
                         "from scores and labels together")
    return s


def _split(scores, labels, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """``(positive scores, negative scores)`` of ``scores`` ``(N,)`` by binary ``labels`` ``(N,)``, both
    checked (``_labels``, ``_scores``), and both classes present."""
    y = _labels(labels)
    s = _scores(scores, y.size, name)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUROC needs both classes, got {n1} positives and {n0} negatives")
    return s[y], s[~y]


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> float:
    """``U / (n_x n_y)`` of positives ``x`` against negatives ``y`` (both non-empty, finite), from mid-ranks
    in ``O(n log n)``: the one AUROC computation of the package."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([x, y]))  # mid-ranks for ties
    u = r[:x.size].sum() - x.size * (x.size + 1) / 2
    return float(u / (x.size * y.size))


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` ``(N,)`` for binary ``labels`` ``(N,)`` (1 = positive, scores
    expected higher): the probability that a random positive scores higher than a random negative (ties
    count 1/2), i.e. the Mann-Whitney U statistic with mid-ranks divided by ``n_pos * n_neg``. 0.5 = no
    separation; ``1 - auroc`` is the AUROC of the flipped score. Raises ``ValueError`` for NaN / inf scores,
    missing (NaN / None) or non-binary labels, lengths that differ and a missing class."""
    return _mann_whitney(*_split(scores, labels))


def auroc_ci(scores, labels, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(auroc, lo, hi)``: the AUROC of ``scores`` for ``labels`` and a stratified bootstrap percentile
    interval (positives and negatives resampled with replacement separately, positives first in each of the
    ``n_boot`` rounds, ``numpy.random.default_rng(seed)``)."""
    return _ci(*_split(scores, labels), n_boot=n_boot, level=level, seed=seed)


def _ci(x: np.ndarray, y: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float, float]:
    """``auroc_ci`` of positives ``x`` against negatives ``y`` (checked by ``_split``)."""
    a = _mann_whitney(x, y)
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    boots = np.array([_mann_whitney(x[rng.integers(0, x.size, x.size)], y[rng.integers(0, y.size, y.size)])
                      for _ in range(int(n_boot))])
    q = (1 - level) / 2
    lo, hi = np.quantile(boots, [q, 1 - q])
    return a, float(lo), float(hi)


def auroc_table(scores: dict, labels, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """AUROC with bootstrap CI (``auroc_ci``) of several scores: ``scores`` ``{name: (n,) array}``, ``labels``
    ``(n,)`` (binary, ``1`` / ``True`` = positive, checked once as in ``auroc``). Returns a DataFrame
    (``score, auroc, lo, hi, best_direction``): ``best_direction`` is ``"higher"`` when larger scores mean positive (AUROC >= 0.5), else ``"lower"``;
    AUROC is always reported for "higher = positive" so that values below 0.5 stay visible."""
    pos = _labels(labels)
    rows = []
    for name, s in scores.items():
        a, lo, hi = _ci(*_split(s, pos, name=f"score {name!r}"), n_boot=n_boot, level=0.95, seed=seed)
        rows.append(dict(score=name, auroc=a, lo=lo, hi=hi, best_direction="higher" if a >= 0.5 else "lower"))
    return pd.DataFrame(rows)


def tpr_at_fpr(scores, labels, fpr: float = 0.05) -> float:
    """True-positive rate at false-positive rate ``fpr`` (in ``[0, 1]``) of the rule "positive when
    ``score >= t``": the ROC curve's vertices are ``(FPR(t), TPR(t))`` at every distinct score ``t`` (and
    ``(0, 0)``), joined by straight lines (a tie of positives and negatives is a diagonal segment, as in
    ``sklearn.metrics.roc_curve``); at an ``fpr`` held by a vertex the largest TPR there, between vertices
    the linear interpolation. At the FPR of a threshold this is the best TPR of any threshold whose FPR is at
    most ``fpr``; between (a tie spanning several negatives, or an ``fpr`` between ``k / n_neg``) it is the TPR
    of the randomised rule mixing the two neighbouring thresholds."""
    if not (isinstance(fpr, (int, float, np.floating, np.integer)) and 0 <= fpr <= 1):
        raise ValueError(f"fpr must be a number in [0, 1], got {fpr!r}")
    from sklearn.metrics import roc_curve

    x, y = _split(scores, labels)
    f, r, _ = roc_curve(np.r_[np.ones(x.size), np.zeros(y.size)], np.r_[x, y], drop_intermediate=False)
    k = int(np.searchsorted(f, fpr, side="right")) - 1  # last vertex with FPR <= fpr (FPR non-decreasing)
    if f[k] == fpr or k == len(f) - 1:
        return float(r[k])
    return float(r[k] + (r[k + 1] - r[k]) * (fpr - f[k]) / (f[k + 1] - f[k]))


def detector_table(scores: dict, labels, seconds_per_sample: dict | None = None,
                   directions: dict | None = None, fpr: float = 0.01, n_boot: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """One row per detector on the same samples: ``auroc_table``'s ``score, auroc, lo, hi, best_direction``
    (AUROC for "higher = positive", bootstrap CI) and

    * ``direction``: the direction the detector is read in, ``directions[name]`` (``"higher"`` or ``"lower"``
      = larger / smaller scores flag a positive), stated before looking at the data; without one, the
      best direction on these data (``direction_from_data`` is then True: an optimistic choice);
    * ``auroc_oriented``: the AUROC read in ``direction`` (``1 - auroc`` for ``"lower"``), and its CI
      ``lo_oriented, hi_oriented`` (``1 - hi, 1 - lo`` for ``"lower"``; the last two columns);
    * ``tpr_at_fpr``: ``tpr_at_fpr`` of the score read in ``direction``, at false-positive rate ``fpr``
      (default 1%, the operating point of Wen et al. 2024);
    * ``seconds_per_sample``: ``seconds_per_sample[name]`` (wall time measured in the same run), NaN if absent.

    Raises ``ValueError`` for a direction other than ``"higher"``/``"lower"`` or a name in ``directions`` /
    ``seconds_per_sample`` that is not a score (a typo would silently fall back to the data's direction)."""
    directions = dict(directions or {})
    seconds_per_sample = dict(seconds_per_sample or {})
    for what, d in (("directions", directions), ("seconds_per_sample", seconds_per_sample)):
        unknown = sorted(set(d) - set(scores))
        if unknown:
            raise ValueError(f"{what} names {unknown}, which are not scores ({sorted(scores)})")
    bad = {k: v for k, v in directions.items() if v not in ("higher", "lower")}
    if bad:
        raise ValueError(f"directions must be 'higher' or 'lower', got {bad}")
    labels = _labels(labels)
    tab = auroc_table(scores, labels, n_boot=n_boot, seed=seed)
    tab["direction"] = [directions.get(n, b) for n, b in zip(tab["score"], tab["best_direction"])]
    tab["direction_from_data"] = [n not in directions for n in tab["score"]]
    lower = tab["direction"].eq("lower").to_numpy()
    tab["auroc_oriented"] = np.where(lower, 1 - tab["auroc"], tab["auroc"])
    tab["tpr_at_fpr"] = [tpr_at_fpr(-np.asarray(scores[n], dtype=float) if lo else scores[n], labels, fpr)
                         for n, lo in zip(tab["score"], lower)]
    tab["fpr"] = float(fpr)
    tab["seconds_per_sample"] = [float(seconds_per_sample.get(n, math.nan)) for n in tab["score"]]
    tab["lo_oriented"] = np.where(lower, 1 - tab["hi"], tab["lo"])
    tab["hi_oriented"] = np.where(lower, 1 - tab["lo"], tab["hi"])
    return tab


def spread_subset(idx, n: int) -> np.ndarray:
    """At most ``n`` entries of ``idx`` ``(m,)`` evenly spread over it, in order: the entries at the rounded
    positions ``linspace(0, m - 1, min(n, m))`` (first and last included; no repeats). For a deterministic,
    label-free sub-sample (e.g. the points of a FLIPD t0 sweep or of a timing run)."""
    idx = np.asarray(idx)
    if idx.ndim != 1 or not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"need idx of shape (m,) and an int n >= 1, got shape {idx.shape} and n={n!r}")
    return idx[np.unique(np.linspace(0, len(idx) - 1, min(n, len(idx))).round().astype(int))]


# ------------------------------------------------------------------------------------------ intervals
def mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x`` ``(n,)`` and its Student-t confidence interval ``(mean, low, high)``; for ``n = 1`` the
    interval is ``(nan, nan)``."""
    from scipy import stats
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("mean_ci of an empty sample")
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def diff_ci(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of means ``mean(a) - mean(b)`` with its Welch (unequal variances) t interval
    ``(diff, low, high)``."""
    from scipy import stats
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"diff_ci needs at least 2 values per group, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dfree = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else np.inf
    d = float(a.mean() - b.mean())
    h = float(stats.t.ppf(0.5 + level / 2, dfree) * se)
    return d, d - h, d + h


def band(df: pd.DataFrame, x: str, y: str, by: Sequence[str] = (), level: float = 0.95) -> pd.DataFrame:
    """Mean and Student-t confidence band of column ``y`` at every value of ``x`` (per group ``by``), over
    the rows sharing them (e.g. seeds): columns ``*by, x, mean, low, high, n``."""
    keys = [*by, x]
    out = []
    for key, g in df.groupby(keys, sort=True):
        m, lo, hi = mean_ci(g[y].to_numpy(), level)
        key = key if isinstance(key, tuple) else (key,)
        out.append(dict(zip(keys, key), mean=m, low=lo, high=hi, n=len(g)))
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------ level sets
def level_sets(values, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile level sets: ``values`` ``(N,)`` -> ``(levels (N,) int64 in [0, L), edges (L + 1,))`` with
    ``edges`` the ``0, 1/n_levels, ..., 1`` quantiles (duplicates removed, so ``L <= n_levels``); value ``v``
    is in level ``l`` when ``edges[l] <= v < edges[l + 1]`` (the maximum in the last level)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("level_sets needs a non-empty, finite array")
    edges = np.unique(np.quantile(v, np.linspace(0, 1, n_levels + 1)))
    if len(edges) == 1:
        return np.zeros(len(v), dtype=np.int64), np.array([edges[0], edges[0]])
    levels = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    return levels.astype(np.int64), edges


# ------------------------------------------------------------------------------------------ diversity
VENDI_UNIT_NORM_TOL = 1e-5  # |row norm - 1| accepted as a unit diagonal with normalize=False (float32 rounding)


def vendi(features, normalize: bool = True) -> float:
    """Vendi score (Friedman & Dieng, TMLR 2023, Sec. 3) of ``features`` ``(n, d)``: ``exp`` of the Shannon
    entropy of the eigenvalues of ``K / n`` for the cosine-similarity kernel ``K = X X^T`` of unit rows, so
    that ``K(x, x) = 1`` and the eigenvalues of ``K / n`` sum to 1. Between 1 (all items identical, or
    ``n = 1``) and ``n`` (mutually orthogonal items). Computed by the ``vendi-score`` package on the unit
    rows: ``vendi.score_dual`` (``d x d`` eigenproblem) when ``d <= n``, else ``vendi.score_X`` (``n x n``);
    both have the same non-zero eigenvalues.

    ``normalize=True`` divides each row by its L2 norm (cosine similarity). ``normalize=False`` takes the rows
    as they are and requires them to be unit vectors (``|norm - 1| <= VENDI_UNIT_NORM_TOL``): with other norms
    ``K`` has no unit diagonal, the eigenvalues of ``K / n`` do not sum to 1 and the "score" is not a Vendi
    score (it can fall outside ``[1, n]``).

    Raises ``ValueError`` for a shape other than ``(n >= 1, d >= 1)``, NaN / inf, a zero row (it has no
    direction: its cosine similarity is undefined), and for ``normalize=False`` rows that are not unit norm."""
    from vendi_score import vendi as _vendi
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"features must be (n, d) with n >= 1 and d >= 1, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise ValueError(f"feature rows {zero[:10].tolist()}{' ...' if len(zero) > 10 else ''} are zero: a zero "
                         "vector has no direction, so its similarity kernel (cosine) is undefined; drop those rows "
                         "or use an embedding without zero vectors")
    if normalize:
        X = X / norms[:, None]
    elif (np.abs(norms - 1) > VENDI_UNIT_NORM_TOL).any():
        bad = np.abs(norms - 1) > VENDI_UNIT_NORM_TOL
        raise ValueError(f"vendi needs a similarity kernel with unit diagonal (K(x, x) = |x|^2 = 1); {int(bad.sum())} "
                         f"of {len(X)} rows have norms in [{norms.min():.4g}, {norms.max():.4g}]; use normalize=True "
                         "(cosine similarity) or pass unit-norm rows")
    if X.shape[1] <= X.shape[0]:
        return float(_vendi.score_dual(X, normalize=False))
    return float(_vendi.score_X(X, normalize=False))


def vendi_per_level(features, levels, min_size: int = 2) -> pd.DataFrame:
    """Vendi score of the items of each level set: ``features`` ``(N, d)``, ``levels`` ``(N,)`` -> columns
    ``level, n, vendi`` (NaN for levels with fewer than ``min_size`` items)."""
    X = np.asarray(features, dtype=np.float64)
    lv = np.asarray(levels).reshape(-1)
    if len(X) != len(lv):
        raise ValueError(f"{len(X)} feature rows for {len(lv)} levels")
    rows = []
    for lvl in np.unique(lv):
        m = lv == lvl
        rows.append(dict(level=int(lvl), n=int(m.sum()),
                         vendi=vendi(X[m]) if m.sum() >= min_size else math.nan))
    return pd.DataFrame(rows)


def vendi_trend(features, levels, draws: int = 20, frac: float = 0.5, seed: int = 0,
                level: float = 0.95) -> pd.DataFrame:
    """Vendi of each level set on equal-size random subsets, and the direction from the lowest to the highest.

    ``features`` ``(N, d)``, ``levels`` ``(N,)`` int (``level_sets``). For each of ``draws`` draws (numpy
    ``default_rng(seed + d)``) every level contributes a subset of ``m = max(2, floor(frac * n_min))`` of its
    items without replacement, ``n_min`` the size of the smallest level: Vendi grows with the number of
    items, so levels are compared at one size. Returns one row per level: ``level, n, m, vendi`` (mean over
    draws), ``vendi_lo, vendi_hi`` (the ``level`` percentile range over draws) and ``attrs``:
    ``direction`` (``"rises"`` when the highest level's Vendi exceeds the lowest's in at least ``level`` of
    the paired draws, ``"falls"`` when it is below in that many, else ``"no clear direction"``),
    ``p_rise`` (fraction of draws with highest > lowest) and ``peak_level`` (the level with the largest mean).
    Raises ``ValueError`` for mismatched lengths, fewer than 2 levels or a level with fewer than 2 items."""
    X = np.asarray(features, dtype=np.float64)
    lv = np.asarray(levels).reshape(-1)
    if X.ndim != 2 or len(X) != len(lv):
        raise ValueError(f"features must be (N, d) with N = len(levels) = {len(lv)}, got shape {X.shape}")
    names = np.unique(lv)
    sizes = np.array([(lv == v).sum() for v in names])
    if len(names) < 2 or sizes.min() < 2:
        raise ValueError(f"vendi_trend needs at least 2 levels of at least 2 items, got sizes {sizes.tolist()}")
    if not 0 < frac <= 1 or not isinstance(draws, (int, np.integer)) or draws < 1 or not 0 < level < 1:
        raise ValueError(f"need 0 < frac <= 1, draws >= 1 and 0 < level < 1, got {frac!r}, {draws!r}, {level!r}")
    m = max(2, int(frac * sizes.min()))
    members = [np.flatnonzero(lv == v) for v in names]
    V = np.empty((int(draws), len(names)))
    for d in range(int(draws)):
        rng = np.random.default_rng(seeds.derive(seed, "draw", d))
        for j, idx in enumerate(members):
            V[d, j] = vendi(X[rng.choice(idx, m, replace=False)])
    q = (1 - level) / 2
    out = pd.DataFrame(dict(level=names.astype(np.int64), n=sizes, m=m, vendi=V.mean(0),
                            vendi_lo=np.quantile(V, q, axis=0), vendi_hi=np.quantile(V, 1 - q, axis=0)))
    p_rise = float(np.mean(V[:, -1] > V[:, 0]))
    out.attrs.update(p_rise=p_rise, peak_level=int(names[np.argmax(V.mean(0))]),
                     direction="rises" if p_rise >= level else "falls" if 1 - p_rise >= level
                     else "no clear direction")
    return out


def vendi_trend_table(features: dict, levels: dict, draws: int = 20, frac: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """``vendi_trend`` for every embedding x descriptor: ``features`` ``{embedding: (N, d)}``, ``levels``
    ``{descriptor: (N,) level labels}`` -> one row per pair with ``embedding, descriptor, m, direction, p_rise,
    peak_level`` (1 = lowest level), and ``vendi, lo, hi`` (per level, rounded to 2 decimals, as published).
    A descriptor with a single level set (e.g. delta = 0 almost everywhere at r = 1e-5) has no direction to
    read and gets no row."""
    rows = []
    for emb, X in features.items():
        for c, lv in levels.items():
            if len(np.unique(lv)) < 2:
                continue
            t = vendi_trend(X, lv, draws=draws, frac=frac, seed=seed)
            rows.append(dict(embedding=emb, descriptor=c, m=int(t.m.iloc[0]), direction=t.attrs["direction"],
                             p_rise=t.attrs["p_rise"], peak_level=t.attrs["peak_level"] + 1,
                             vendi=t.vendi.round(2).tolist(), lo=t.vendi_lo.round(2).tolist(),
                             hi=t.vendi_hi.round(2).tolist()))
    return pd.DataFrame(rows)


def brightness_contrast(images, value_range: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Per-image ``brightness`` (mean pixel) and ``contrast`` (standard deviation of the pixels, ddof 0) of
    ``images`` ``(N, ...)`` mapped from ``value_range`` to ``[0, 1]``, over all channels and pixels -> DataFrame
    of ``N`` rows. The named control of a diversity or descriptor verdict: a cosine kernel on uncentred,
    non-negative pixels is dominated by brightness and contrast. Raises ``ValueError`` for NaN / inf, fewer
    than 2 dimensions or an empty range."""
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    x = np.asarray(images.detach().cpu().double().numpy() if hasattr(images, "detach") else images, dtype=np.float64)
    if x.ndim < 2 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"images must be a finite (N, ...) array with N >= 1, got shape {x.shape}")
    u = ((x - lo) / (hi - lo)).reshape(len(x), -1)
    return pd.DataFrame(dict(brightness=u.mean(1), contrast=u.std(1)))


def spearman_ci(x, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Spearman rank correlation of paired ``x``, ``y`` ``(N,)`` with a percentile bootstrap interval over
    resampled pairs (``scipy.stats.bootstrap``, ``paired=True``, ``method="percentile"``, numpy
    ``default_rng(seed)``) -> ``(rho, lo, hi)``. Raises ``ValueError`` for other lengths, N < 3 or non-finite
    values; a constant input has no rank correlation (NaN from scipy) and raises too."""
    from scipy import stats as sps
    a, b = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if len(a) != len(b) or len(a) < 3 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"x and y must be finite, of one length >= 3, got {len(a)} and {len(b)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        raise ValueError("a constant input has no rank correlation")
    rho = float(sps.spearmanr(a, b).statistic)
    res = sps.bootstrap((a, b), lambda u, v: sps.spearmanr(u, v).statistic, paired=True, vectorized=False,
                        n_resamples=int(n_boot), confidence_level=level, method="percentile",
                        rng=np.random.default_rng(seed))
    return rho, float(res.confidence_interval.low), float(res.confidence_interval.high)


# ------------------------------------------------------------------------------------------ sub-populations
def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6: 65-70) of ``pvalues`` ``(m,)``:
    with ``p_(1) <= ... <= p_(m)`` sorted, ``adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``, returned
    in the input order. Rejecting where the adjusted p-value is ``<= alpha`` controls the family-wise error rate
    at ``alpha`` under any dependence between the tests. NaN entries (no test was possible) stay NaN and do not
    count in ``m``. Raises ``ValueError`` for another shape or values outside ``[0, 1]``."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be one family of tests, shape (m,), got {p.shape}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got values in [{p[ok].min():.3g}, {p[ok].max():.3g}]")
    q = p[ok]
    order = np.argsort(q, kind="stable")
    adj = np.empty_like(q)
    adj[order] = np.minimum(1.0, np.maximum.accumulate((q.size - np.arange(q.size)) * q[order]))
    out = np.full(p.shape, np.nan)
    out[ok] = adj
    return out


def _paired_groups(values: dict, min_n: int = 2) -> tuple[list, np.ndarray]:
    """``values`` ``{group: (n,)}`` of a paired design -> ``(groups, X (n, g) float64)``, checked: at least 2
    groups, one length ``n >= min_n`` for all (row ``i`` of every group is the same unit), finite."""
    groups = list(values)
    cols = [np.asarray(values[g], dtype=np.float64).reshape(-1) for g in groups]
    lengths = {g: c.size for g, c in zip(groups, cols)}
    if len(groups) < 2 or len(set(lengths.values())) != 1 or min(lengths.values()) < min_n:
        raise ValueError(f"a paired design needs >= 2 groups with one length >= {min_n} (row i of every group = "
                         f"the same unit, e.g. the same latent), got lengths {lengths}")
    X = np.stack(cols, axis=1)
    if not np.isfinite(X).all():
        raise ValueError("values contain NaN or inf: fix their computation, or drop those units from every group")
    return groups, X


def group_tests(values: dict) -> dict:
    """Omnibus tests that the groups of a paired design differ in distribution: ``values`` ``{group: (n,)}``,
    row ``i`` of every group measured on the same unit (e.g. one latent under each class of a conditional
    generator). Returns ``dict(n, groups, kruskal_h, kruskal_p, friedman_chi2, friedman_p)``:

    * Kruskal-Wallis ``H`` (Kruskal & Wallis 1952; ``scipy.stats.kruskal``, mid-ranks over all ``n g`` values,
      tie-corrected, chi^2 with ``g - 1`` degrees of freedom): treats the groups as independent samples;
    * Friedman's chi^2 (Friedman 1937; ``scipy.stats.friedmanchisquare``, ranks within each unit, tie-corrected,
      ``g >= 3`` groups, else NaN): the rank test of the complete block design, which uses the pairing (each
      unit's own level cancels).

    A statistic is NaN where it has nothing to rank: all ``n g`` values equal (Kruskal-Wallis), every unit
    constant across the groups (Friedman; e.g. ``delta = 0`` everywhere). Raises ``ValueError`` as
    ``_paired_groups``."""
    from scipy import stats as sps
    groups, X = _paired_groups(values)
    kw = sps.kruskal(*X.T) if np.ptp(X) > 0 else (math.nan, math.nan)
    fr = sps.friedmanchisquare(*X.T) if X.shape[1] >= 3 and (np.ptp(X, axis=1) > 0).any() else (math.nan, math.nan)
    return dict(n=int(X.shape[0]), groups=len(groups), kruskal_h=float(kw[0]), kruskal_p=float(kw[1]),
                friedman_chi2=float(fr[0]), friedman_p=float(fr[1]))


def _pair_boot(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per resample ``idx`` ``(B, n)`` of the units: ``(B, 3)`` mean difference, paired P(a > b) and AUROC of
    ``a`` vs ``b`` on the resampled units (both groups at the same resampled units)."""
    d = a - b
    win = (d > 0) + 0.5 * (d == 0)
    C = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])  # C[i, j]: unit i of a against unit j of b
    step = max(1, 4_000_000 // max(1, a.size ** 2))
    au = np.concatenate([C[i[:, :, None], i[:, None, :]].mean((1, 2)) for i in np.array_split(
        idx, max(1, math.ceil(len(idx) / step)))]) if len(idx) else np.zeros(0)
    return np.stack([d[idx].mean(1), win[idx].mean(1), au], axis=1)


def paired_comparisons(values: dict, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Effect sizes with bootstrap CIs and a test for every pair of groups of a paired design: ``values``
    ``{group: (n,)}``, row ``i`` of every group measured on the same unit (e.g. one latent under each class).
    One row per pair ``(a, b)``, ``a`` before ``b`` in the order of ``values``; columns ``a, b, n`` and

    * ``mean_diff`` (``mean_i a_i - b_i``), ``mean_diff_lo``, ``mean_diff_hi``;
    * ``p_paired``: ``P(a_i > b_i) + P(a_i = b_i) / 2`` over units (the paired probability of superiority: how
      often the same unit scores higher in ``a``; 0.5 = no difference), ``p_paired_lo``, ``p_paired_hi``;
    * ``auroc``: ``P(A > B) + P(A = B) / 2`` for ``A``, ``B`` drawn independently from the two groups' values
      (the Mann-Whitney ``U / n^2`` of ``auroc``; Cliff's delta is ``2 auroc - 1``): how far the two
      distributions differ (Humayun et al. Fig. 13 compares distributions), ``auroc_lo``, ``auroc_hi``;
    * ``wilcoxon_p``: two-sided Wilcoxon signed-rank test of the paired differences (``scipy.stats.wilcoxon``,
      zero differences dropped; NaN when all are zero). For a family of pairs apply ``holm`` to it.

    CIs: percentile bootstrap over units, ``n_boot`` resamples of the ``n`` unit indices (numpy
    ``default_rng(seed)``, the same resamples for every pair): a resampled unit keeps its values in both groups,
    so the dependence the pairing creates is kept (``auroc_ci`` resamples two independent samples separately,
    which a paired design is not). Raises ``ValueError`` as ``_paired_groups`` and for ``n_boot < 1`` or a
    ``level`` outside ``(0, 1)``."""
    from scipy import stats as sps
    groups, X = _paired_groups(values)
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and 0 < level < 1, got {n_boot}, {level}")
    idx = np.random.default_rng(seed).integers(0, X.shape[0], (int(n_boot), X.shape[0]))
    q, rows = (1 - level) / 2, []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            a, b = X[:, i], X[:, j]
            lo, hi = np.quantile(_pair_boot(a, b, idx), [q, 1 - q], axis=0)
            d = a - b
            rows.append(dict(a=groups[i], b=groups[j], n=len(a), mean_diff=float(d.mean()), mean_diff_lo=lo[0],
                             mean_diff_hi=hi[0], p_paired=float(np.mean((d > 0) + 0.5 * (d == 0))), p_paired_lo=lo[1],
                             p_paired_hi=hi[1], auroc=_mann_whitney(a, b), auroc_lo=lo[2], auroc_hi=hi[2],
                             wilcoxon_p=float(sps.wilcoxon(d).pvalue) if (d != 0).any() else math.nan))
    return pd.DataFrame(rows)


def variance_shares(values: dict) -> dict:
    """How much of the variation of a paired design is the group, how much the unit: ``values`` ``{group:
    (n,)}`` (row ``i`` = the same unit in every group) -> ``dict(group, unit, residual)``, the sums of squares of
    the additive two-way decomposition ``y_ig = mean + group_g + unit_i + e_ig`` (balanced, one value per cell:
    ``SS_group = n sum_g (ybar_g - ybar)^2``, ``SS_unit = g sum_i (ybar_i - ybar)^2``, residual the rest, the
    group x unit interaction) divided by the total sum of squares; NaN when all values are equal. Raises
    ``ValueError`` as ``_paired_groups``."""
    _, X = _paired_groups(values)
    dev = X - X.mean()
    total = float((dev ** 2).sum())
    if total == 0:
        return dict(group=math.nan, unit=math.nan, residual=math.nan)
    ss_g = X.shape[0] * float(((X.mean(0) - X.mean()) ** 2).sum())
    ss_u = X.shape[1] * float(((X.mean(1) - X.mean()) ** 2).sum())
    return dict(group=ss_g / total, unit=ss_u / total, residual=(total - ss_g - ss_u) / total)


def half_samples(n: int, draws: int, frac: float = 0.5, seed: int = 0) -> np.ndarray:
    """``(draws, m)`` int: ``draws`` subsets of ``m = max(2, floor(frac n))`` of the unit indices ``0..n-1``,
    each drawn without replacement (numpy ``default_rng(seed)``, ``rng.choice(n, m, replace=False)`` per draw).
    Half-sampling (``frac = 0.5``): for a mean, the variance over half-samples, ``(sigma^2 / m)(1 - m / n)``,
    equals the full sample's ``sigma^2 / n``; without replacement, so no unit is duplicated (a duplicate deflates
    a Vendi score). Raises ``ValueError`` for ``n < 2``, ``draws < 1`` or ``frac`` outside ``(0, 1]``."""
    if not (isinstance(n, (int, np.integer)) and n >= 2 and isinstance(draws, (int, np.integer)) and draws >= 1
            and 0 < frac <= 1):
        raise ValueError(f"need an int n >= 2, an int draws >= 1 and 0 < frac <= 1, got {n!r}, {draws!r}, {frac!r}")
    rng = np.random.default_rng(seed)
    m = max(2, int(frac * n))
    return np.stack([rng.choice(int(n), m, replace=False) for _ in range(int(draws))])


def diversity_by_group(features: dict, scores: dict, draws: int = 200, frac: float = 0.5, seed: int = 0,
                       level: float = 0.95) -> pd.DataFrame:
    """Vendi diversity per group of a paired design, and whether the groups that score higher are more diverse
    (Humayun et al. Fig. 13: psi differs between sub-populations, "an underlying bias in generation diversity").

    ``features`` ``{group: (n, d)}`` (the embeddings of each group's items), ``scores`` ``{group: (n,)}`` (e.g.
    psi), same groups, row ``i`` = the same unit (latent) in every group. ``draws`` half-samples of the units
    (``half_samples(n, draws, frac, seed)``, the same ``m`` units for every group in a draw); per draw and group
    the Vendi score (``vendi``, cosine kernel) of those rows and their mean score. Vendi grows with the number of
    items, so every comparison is made at the one size ``m``: a point estimate is the mean over draws of a
    per-draw statistic and its interval the ``level`` percentile range of the same statistic over draws (the
    half-sample analogue of a bootstrap interval). One row per group: ``group, n, score_mean`` (all ``n``),
    ``vendi`` (all ``n`` rows, for reference: not comparable with the ``m``-item values), ``m``, ``vendi_sub``
    (mean over draws), ``vendi_lo``, ``vendi_hi``. ``attrs``: ``spearman``, ``spearman_lo``, ``spearman_hi``
    (per draw, Spearman over groups of mean score vs Vendi); ``top`` / ``bottom`` (the groups of highest / lowest
    ``score_mean``), ``diff``, ``diff_lo``, ``diff_hi`` (per draw, Vendi(top) - Vendi(bottom)), ``p_top_higher``
    (fraction of draws with Vendi(top) > Vendi(bottom)) and ``direction``: ``"higher score, more diverse"`` when
    ``p_top_higher >= level``, ``"higher score, less diverse"`` when ``1 - p >= level``, else ``"no clear
    direction"``. Raises ``ValueError`` for other groups, lengths or shapes."""
    from scipy import stats as sps
    groups, S = _paired_groups(scores)
    F = [np.asarray(features[g], dtype=np.float64) for g in groups] if set(features) == set(groups) else None
    if F is None or any(f.ndim != 2 or len(f) != S.shape[0] for f in F):
        raise ValueError(f"features must be {{group: (n, d)}} for the groups of scores {groups} with n = {S.shape[0]}")
    sub = half_samples(S.shape[0], draws, frac, seed)
    V = np.array([[vendi(f[i]) for f in F] for i in sub])  # (draws, g)
    M = np.stack([S[i].mean(0) for i in sub])
    q = (1 - level) / 2
    out = pd.DataFrame(dict(group=groups, n=S.shape[0], score_mean=S.mean(0), vendi=[vendi(f) for f in F],
                            m=sub.shape[1], vendi_sub=V.mean(0), vendi_lo=np.quantile(V, q, 0),
                            vendi_hi=np.quantile(V, 1 - q, 0)))
    rho = np.array([sps.spearmanr(m, v).statistic for m, v in zip(M, V)])
    top, bot = int(np.argmax(S.mean(0))), int(np.argmin(S.mean(0)))
    dv = V[:, top] - V[:, bot]
    p = float(np.mean(dv > 0))
    out.attrs.update(spearman=float(rho.mean()), spearman_lo=float(np.quantile(rho, q)),
                     spearman_hi=float(np.quantile(rho, 1 - q)), top=groups[top], bottom=groups[bot],
                     diff=float(dv.mean()), diff_lo=float(np.quantile(dv, q)), diff_hi=float(np.quantile(dv, 1 - q)),
                     p_top_higher=p,
                     direction="higher score, more diverse" if p >= level else "higher score, less diverse"
                     if 1 - p >= level else "no clear direction")
    return out


# ------------------------------------------------------------------------------------------ Frechet distance
class TooFewSamplesError(ValueError):
    """A feature set too small for a covariance (fewer than 2 rows, or fewer than ``min_samples``)."""


def frechet_distance_gaussians(mu1, sigma1, mu2, sigma2) -> float:
    """The Frechet (2-Wasserstein squared) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (Dowson &
    Landau 1982; the FID formula of Heusel et al. 2017, Eq. 6): ``||mu1 - mu2||^2 + tr(S1) + tr(S2) -
    2 tr((S1^(1/2) S2 S1^(1/2))^(1/2))``. ``mu`` ``(d,)``, ``sigma`` ``(d, d)`` symmetric positive semi-definite;
    float64. The matrix square roots are taken by symmetric eigendecompositions (eigenvalues below 0 from
    rounding set to 0), so ``S1 S2`` need not be diagonalisable and no complex parts arise (scipy's
    ``sqrtm(S1 @ S2)`` of pytorch-fid gives the same trace). Raises ``ValueError`` for mismatched shapes or NaN."""
    m1, m2 = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = m1.size
    if m2.size != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"need mu (d,) and sigma (d, d) of one d for both, got {m1.shape}, {s1.shape}, {m2.shape}, "
                         f"{s2.shape}")
    if not all(np.isfinite(a).all() for a in (m1, m2, s1, s2)):
        raise ValueError("means and covariances must be finite")
    w, V = np.linalg.eigh((s1 + s1.T) / 2)
    r1 = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    m = r1 @ ((s2 + s2.T) / 2) @ r1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _feature_moments(feats, name: str, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must be features (n, d), got shape {f.shape}")
    if f.shape[0] < max(2, int(min_samples)):
        raise TooFewSamplesError(f"{name} has {f.shape[0]} samples; the Frechet distance needs at least "
                                 f"{max(2, int(min_samples))} (a covariance needs 2; with n <= d it is singular and the "
                                 "distance biased upwards: Heusel et al. use 50,000): pass more samples")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    return f.mean(0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def frechet_distance(feats_a, feats_b, min_samples: int = 2) -> float:
    """Frechet distance between two feature sets ``(n_a, d)`` and ``(n_b, d)`` (FID, Heusel et al. 2017, Eq. 6,
    on any features, e.g. the EfficientNet-Lite0 embeddings of ``geom.embeddings``): the distance between the
    Gaussians with their sample means and covariances (``np.cov``, ``ddof = 1``, as pytorch-fid),
    ``frechet_distance_gaussians``. In squared feature units; 0 for equal moments. It is biased upwards at small
    ``n`` (compare sets of equal sizes only). Raises ``TooFewSamplesError`` (a ``ValueError``) for a set of fewer
    than ``max(2, min_samples)`` rows, ``ValueError`` for other shapes, mismatched ``d`` or NaN."""
    ma, sa = _feature_moments(feats_a, "feats_a", min_samples)
    mb, sb = _feature_moments(feats_b, "feats_b", min_samples)
    if ma.size != mb.size:
        raise ValueError(f"feats_a has {ma.size} features per sample, feats_b {mb.size}: use one feature space")
    return frechet_distance_gaussians(ma, sa, mb, sb)


def frechet_distance_ci(feats_a, feats_b, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                        min_samples: int = 2) -> tuple[float, float, float]:
    """``(fd, lo, hi)``: ``frechet_distance`` and a bootstrap percentile interval (the rows of each set resampled
    with replacement, separately, ``n_boot`` times; ``numpy.random.default_rng(seed)``, rows of ``a`` first in each
    round). A resample repeats rows, which adds to the distance's small-sample bias: read the interval as the
    spread, not as a bias-corrected range. Raises as ``frechet_distance`` and ``ValueError`` for ``n_boot < 1`` or a
    ``level`` outside ``(0, 1)``."""
    fd = frechet_distance(feats_a, feats_b, min_samples)
    if isinstance(n_boot, bool) or int(n_boot) < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and 0 < level < 1, got {n_boot}, {level}")
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = np.array([frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))],
                                       min_samples) for _ in range(int(n_boot))])
    q = (1 - level) / 2
    lo, hi = np.quantile(boots, [q, 1 - q])
    return fd, float(lo), float(hi)
