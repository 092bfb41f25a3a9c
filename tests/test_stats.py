"""geom.stats against independent references: scikit-learn's AUROC and ROC curve, a brute-force pair count and
threshold loop, scipy's t intervals, a brute-force level-set loop, closed-form Vendi scores; and bit-identical to
the formulas the notebooks' published numbers were computed with (geom.slices.auroc(positive, negative),
geom.trajectories.auroc(scores, labels), the positives-first stratified bootstrap), copied here as references."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score, roc_curve

from geom import stats


# ------------------------------------------------------------------------------------------ old formulas
def _old_auroc_pos_neg(positive, negative):
    """geom.slices.auroc before geom.stats (notebooks 04, 05, 13)."""
    from scipy.stats import rankdata
    x = np.asarray(positive, dtype=float).reshape(-1)
    y = np.asarray(negative, dtype=float).reshape(-1)
    r = rankdata(np.concatenate([x, y]))
    u = r[:x.size].sum() - x.size * (x.size + 1) / 2
    return float(u / (x.size * y.size))


def _old_auroc_ci(positive, negative, n_boot, level=0.95, seed=0):
    """geom.slices.auroc_ci before geom.stats."""
    x = np.asarray(positive, dtype=float).reshape(-1)
    y = np.asarray(negative, dtype=float).reshape(-1)
    rng = np.random.default_rng(seed)
    boots = np.array([_old_auroc_pos_neg(x[rng.integers(0, x.size, x.size)], y[rng.integers(0, y.size, y.size)])
                      for _ in range(int(n_boot))])
    q = (1 - level) / 2
    lo, hi = np.quantile(boots, [q, 1 - q])
    return _old_auroc_pos_neg(x, y), float(lo), float(hi)


def _old_mean_ci(x, level=0.95):
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    m = float(x.mean())
    h = float(st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - h, m + h


def _old_diff_ci(a, b, level=0.95):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dfree = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    d = float(a.mean() - b.mean())
    h = float(st.t.ppf(0.5 + level / 2, dfree) * se)
    return d, d - h, d + h


def _data(seed, n=None, ties=False):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 300)) if n is None else n
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + 0.7 * y
    return (s.round(1) if ties else s), y


@pytest.mark.parametrize("seed", range(12))
def test_bit_identical_to_the_old_formulas(seed):
    s, y = _data(seed, ties=seed % 2 == 1)
    pos = y.astype(bool)
    assert stats.auroc(s, y) == _old_auroc_pos_neg(s[pos], s[~pos])
    assert stats.auroc(s, pos) == stats.auroc(s, y)
    assert stats.auroc_ci(s, y, n_boot=40, level=0.9, seed=seed) == _old_auroc_ci(s[pos], s[~pos], 40, 0.9, seed)
    tab = stats.auroc_table({"s": s, "-s": -s}, pos, n_boot=30, seed=seed)
    for name, x in (("s", s), ("-s", -s)):
        a, lo, hi = _old_auroc_ci(x[pos], x[~pos], 30, seed=seed)
        row = tab.set_index("score").loc[name]
        assert (row.auroc, row.lo, row.hi) == (a, lo, hi)
    assert stats.mean_ci(s, 0.9) == _old_mean_ci(s, 0.9)
    assert stats.diff_ci(s[pos], s[~pos]) == _old_diff_ci(s[pos], s[~pos])


# ------------------------------------------------------------------------------------------ AUROC
def _brute_auroc(x, y):
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return ((x > y).sum() + 0.5 * (x == y).sum()) / (x.size * y.size)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_vs_sklearn_and_pairs(seed, ties):
    s, y = _data(seed, 200, ties)
    a = stats.auroc(s, y)
    assert a == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert a == pytest.approx(_brute_auroc(s[y == 1], s[y == 0]), abs=1e-12)
    assert stats.auroc(-s, y) == pytest.approx(1 - a, abs=1e-12)
    assert stats.auroc(s, 1 - y) == pytest.approx(1 - a, abs=1e-12)


def test_auroc_with_many_ties_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(bool)
    s = rng.integers(0, 5, 300).astype(float)
    assert stats.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_extremes_and_errors():
    assert stats.auroc([0, 1, 2, 3], [0, 0, 1, 1]) == 1.0
    assert stats.auroc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0
    assert stats.auroc([1, 1, 1, 1, 1], [0, 1, 0, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        stats.auroc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="both classes"):
        stats.auroc([], [])
    with pytest.raises(ValueError, match="NaN"):
        stats.auroc([np.nan, 2], [0, 1])
    with pytest.raises(ValueError, match="binary"):
        stats.auroc([1, 2, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="length"):
        stats.auroc([1, 2, 3], [0, 1])


def test_auroc_ci_covers_and_is_seeded():
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 200)]
    y = np.r_[np.ones(200), np.zeros(200)]
    a, lo, hi = stats.auroc_ci(s, y, n_boot=300, seed=0)
    assert lo < a < hi and hi - lo < 0.2
    assert lo < 0.760 < hi  # true AUROC of N(1,1) vs N(0,1) is Phi(1/sqrt 2) = 0.760
    assert stats.auroc_ci(s, y, n_boot=300, seed=0) == (a, lo, hi)
    with pytest.raises(ValueError, match="n_boot"):
        stats.auroc_ci(s, y, n_boot=0)
    tab = stats.auroc_table({"good": s, "flipped": -s}, y > 0, n_boot=100)
    assert list(tab.columns) == ["score", "auroc", "lo", "hi", "best_direction"]
    assert list(tab.best_direction) == ["higher", "lower"]
    assert tab.auroc.iloc[0] == pytest.approx(1 - tab.auroc.iloc[1])
    with pytest.raises(ValueError, match="labels"):
        stats.auroc_table({"s": np.zeros(3)}, np.ones(4, bool))


# ------------------------------------------------------------------------------------------ TPR at FPR
def _tpr_at_fpr_sklearn(s, y, fpr):
    """The ROC curve of scikit-learn (every threshold kept), read at ``fpr``: the largest TPR of the
    vertices at that FPR, else linear interpolation between the neighbouring vertices."""
    f, t, _ = roc_curve(y, s, drop_intermediate=False)
    at = t[f == fpr]
    if at.size:
        return at.max()
    k = np.flatnonzero(f < fpr).max()
    return t[k] + (t[k + 1] - t[k]) * (fpr - f[k]) / (f[k + 1] - f[k])


def _tpr_brute(s, y, fpr):
    """Best TPR of any threshold rule ``s >= c`` with FPR <= fpr (c over the scores and +inf)."""
    pos, neg = s[y == 1], s[y == 0]
    best = 0.0
    for c in np.r_[s, np.inf]:
        if (neg >= c).mean() <= fpr:
            best = max(best, (pos >= c).mean())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_tpr_at_fpr_vs_sklearn_roc_curve_and_brute_force(seed):
    s, y = _data(seed, 120, ties=seed % 2 == 1)
    for fpr in (0.0, 0.01, 0.05, 0.1, 0.333, 0.5, 0.95, 1.0):
        assert stats.tpr_at_fpr(s, y, fpr) == pytest.approx(_tpr_at_fpr_sklearn(s, y, fpr), abs=1e-12)
    for c in np.r_[s, np.inf]:  # at the FPR of a threshold: the best TPR of a threshold with at most that FPR
        fpr = float((s[y == 0] >= c).mean())
        assert stats.tpr_at_fpr(s, y, fpr) == pytest.approx(_tpr_brute(s, y, fpr), abs=1e-12)


def test_tpr_at_fpr_extremes_and_errors():
    assert stats.tpr_at_fpr([0, 1, 2, 3], [0, 0, 1, 1], 0.0) == 1.0
    assert stats.tpr_at_fpr([3, 2, 1, 0], [0, 0, 1, 1], 0.0) == 0.0
    assert stats.tpr_at_fpr([3, 2, 1, 0], [0, 0, 1, 1], 1.0) == 1.0
    assert stats.tpr_at_fpr([1, 1, 1, 1], [0, 1, 0, 1], 0.25) == 0.25  # one tie: the chance diagonal
    with pytest.raises(ValueError, match="fpr"):
        stats.tpr_at_fpr([0, 1], [0, 1], 1.5)
    with pytest.raises(ValueError, match="both classes"):
        stats.tpr_at_fpr([0, 1], [1, 1])


# ------------------------------------------------------------------------------------------ intervals
def test_mean_ci_matches_scipy():
    x = np.random.default_rng(0).normal(2.0, 3.0, 17)
    m, lo, hi = stats.mean_ci(x, 0.95)
    ref = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert m == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(ref, rel=1e-12)
    assert math.isnan(stats.mean_ci([1.0])[1])


def test_diff_ci_matches_scipy_welch():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 20), rng.normal(0.5, 3, 35)
    d, lo, hi = stats.diff_ci(a, b)
    ci = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_band_groups():
    df = pd.DataFrame(dict(step=[0, 0, 0, 1, 1, 1], g=["a"] * 6, v=[1.0, 2.0, 3.0, 5.0, 5.0, 5.0]))
    b = stats.band(df, "step", "v", by=["g"])
    assert list(b["n"]) == [3, 3]
    assert b["mean"].tolist() == [2.0, 5.0]
    assert b.loc[1, "low"] == b.loc[1, "high"] == 5.0


# ------------------------------------------------------------------------------------------ level sets
@pytest.mark.parametrize("n_levels", [1, 3, 5])
def test_level_sets_match_brute_force(n_levels):
    v = np.random.default_rng(n_levels).normal(size=101)
    lv, edges = stats.level_sets(v, n_levels)
    qs = [np.quantile(v, q) for q in np.linspace(0, 1, n_levels + 1)]
    for i, x in enumerate(v):  # brute force: the last quantile interval [q_l, q_{l+1}) holding x
        expect = n_levels - 1
        for lvl in range(n_levels):
            if qs[lvl] <= x < qs[lvl + 1]:
                expect = lvl
                break
        assert lv[i] == expect
    counts = np.bincount(lv, minlength=n_levels)
    assert counts.sum() == 101 and counts.max() - counts.min() <= 2  # quantile bins are balanced


def test_level_sets_constant_and_ties():
    lv, edges = stats.level_sets(np.ones(10), 4)
    assert (lv == 0).all()
    lv, edges = stats.level_sets(np.r_[np.zeros(8), 1.0, 2.0], 4)  # duplicate quantiles collapse
    assert lv.max() < len(edges) - 1 and lv[-1] == len(edges) - 2


# ------------------------------------------------------------------------------------------ Vendi
def test_vendi_identical_is_one_and_orthogonal_is_n():
    x = np.random.default_rng(0).normal(size=(1, 16))
    assert stats.vendi(np.repeat(x, 7, 0)) == pytest.approx(1.0, abs=1e-9)
    assert stats.vendi(np.eye(5)[:, :]) == pytest.approx(5.0, abs=1e-9)
    assert stats.vendi(np.eye(8)[:6] * np.arange(1, 7)[:, None]) == pytest.approx(6.0, abs=1e-9)  # scale-free


def test_vendi_primal_equals_dual():
    X = np.abs(np.random.default_rng(0).normal(size=(12, 5)))
    Y = np.abs(np.random.default_rng(1).normal(size=(5, 12)))
    from vendi_score import vendi as v
    assert stats.vendi(X) == pytest.approx(v.score_X(X), rel=1e-8)  # d < n: dual path vs n x n kernel
    assert stats.vendi(Y) == pytest.approx(v.score_dual(Y), rel=1e-8)  # d > n: n x n path vs dual


def test_vendi_two_groups_closed_form():
    # m copies of e1 and m copies of e2: eigenvalues (1/2, 1/2) -> Vendi 2
    X = np.r_[np.tile(np.eye(3)[0], (4, 1)), np.tile(np.eye(3)[1], (4, 1))]
    assert stats.vendi(X) == pytest.approx(2.0, abs=1e-9)
    df = stats.vendi_per_level(X, np.r_[np.zeros(4), np.ones(4)])
    assert df["vendi"].tolist() == pytest.approx([1.0, 1.0])
    assert df["n"].tolist() == [4, 4]
    with pytest.raises(ValueError, match="zero"):
        stats.vendi(np.zeros((2, 3)))


def test_vendi_closed_forms_in_both_modes():
    """Friedman & Dieng: VS = exp(H(eig(K / n))) with K(x, x) = 1: one item -> 1, n copies -> 1, n orthogonal -> n."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5))
    u = x / np.linalg.norm(x)
    for normalize, one in ((True, x), (False, u)):
        assert stats.vendi(one, normalize=normalize) == pytest.approx(1.0, abs=1e-12)
        assert stats.vendi(np.repeat(one, 4, 0), normalize=normalize) == pytest.approx(1.0, abs=1e-9)
        assert stats.vendi(np.eye(3, 10), normalize=normalize) == pytest.approx(3.0, abs=1e-9)
    assert stats.vendi(np.r_[x, 3 * x, 0.1 * x]) == pytest.approx(1.0, abs=1e-9)  # scaled copies: one direction
    assert stats.vendi(5 * np.eye(4)) == pytest.approx(4.0, abs=1e-9)


def test_vendi_equals_vendi_score_kernel_on_unit_rows():
    """Unit-norm rows: geom (dual / primal eigenproblem) equals vendi-score's score_K on the kernel built
    entry by entry (vendi_score.vendi.score with k = dot product), for d < n and d > n."""
    from vendi_score import vendi as v
    rng = np.random.default_rng(1)
    for n, d in ((12, 5), (6, 20)):
        X = rng.normal(size=(n, d)) + 0.5
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        ref = v.score(list(U), np.dot)
        assert stats.vendi(U, normalize=False) == pytest.approx(ref, rel=1e-9)
        assert stats.vendi(X, normalize=True) == pytest.approx(ref, rel=1e-9)
        assert 1.0 <= ref <= n


def test_vendi_refuses_kernels_without_unit_diagonal_and_zero_rows():
    with pytest.raises(ValueError, match=r"unit diagonal.*norms in \[2, 2\].*normalize=True"):
        stats.vendi(2 * np.eye(3), normalize=False)  # K(x, x) = 4: the old code returned 0.32, outside [1, 3]
    with pytest.raises(ValueError, match="unit diagonal"):
        stats.vendi(np.r_[np.eye(3)[:2], [[0.0, 0.0, 1.1]]], normalize=False)
    stats.vendi(np.eye(3) * (1 + 1e-7), normalize=False)  # float32-level rounding of unit rows is accepted
    for normalize in (True, False):
        with pytest.raises(ValueError, match=r"rows \[1\] are zero.*no direction"):
            stats.vendi(np.r_[np.eye(3)[:1], np.zeros((1, 3)), np.eye(3)[1:2]], normalize=normalize)
    with pytest.raises(ValueError, match="shape"):
        stats.vendi(np.zeros((0, 3)))


def test_former_names_stay_importable_as_the_same_functions():
    """Code written against the old modules keeps working: the moved names are the new functions themselves;
    slices.auroc / auroc_ci (argument order (positive, negative)) are gone with a message naming the new call."""
    from geom import datasets, planes, plots, slices, stats, trajectories
    for n in ("auroc", "mean_ci", "diff_ci", "band", "level_sets", "vendi", "vendi_per_level"):
        assert getattr(trajectories, n) is getattr(stats, n)
    for n in ("plane_latents", "plane_uv", "plane_axis", "plane_coordinates", "in_hull", "grid_image", "check_anchors"):
        assert getattr(slices, n) is getattr(planes, n)
    for n in ("ood_images", "id_images", "photo_crops", "coloured_digits", "noise_textures", "medical_scans"):
        assert getattr(slices, n) is getattr(datasets, n)
    assert slices.auroc_table is stats.auroc_table and slices.slice_maps is plots.slice_maps
    with pytest.raises(AttributeError, match=r"geom.stats.auroc\(scores, labels\)"):
        slices.auroc


def test_detector_table_orients_each_detector_and_keeps_its_seconds():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    good = y + rng.normal(0, 0.8, y.size)        # higher = positive
    low = -good                                  # lower = positive
    tab = stats.detector_table({"good": good, "low": low, "free": low}, y, seconds_per_sample={"good": 0.5},
                               directions={"good": "higher", "low": "lower"}, fpr=0.05, n_boot=50).set_index("score")
    a = stats.auroc(good, y)
    assert tab.loc["good", "auroc"] == pytest.approx(a) and tab.loc["low", "auroc"] == pytest.approx(1 - a)
    assert tab.loc["low", "auroc_oriented"] == pytest.approx(a) and tab.loc["free", "auroc_oriented"] == pytest.approx(a)
    for name in ("good", "low"):                  # the oriented CI is the CI of the oriented AUROC
        assert tab.loc[name, "lo_oriented"] <= tab.loc[name, "auroc_oriented"] <= tab.loc[name, "hi_oriented"]
    assert tab.loc["low", "lo_oriented"] == pytest.approx(1 - tab.loc["low", "hi"])
    assert tab.loc["low", "hi_oriented"] == pytest.approx(1 - tab.loc["low", "lo"])
    assert (tab.loc["good", ["lo_oriented", "hi_oriented"]].tolist()
            == tab.loc["good", ["lo", "hi"]].tolist())
    assert list(tab["direction_from_data"]) == [False, False, True] and tab.loc["free", "direction"] == "lower"
    t = _tpr_brute(good, y, 0.05)                 # same ROC read in each stated direction
    assert tab["tpr_at_fpr"].tolist() == pytest.approx([t, t, t], abs=1e-12)
    assert tab.loc["good", "seconds_per_sample"] == 0.5 and np.isnan(tab.loc["low", "seconds_per_sample"])
    wrong = stats.detector_table({"good": good}, y, directions={"good": "lower"}, fpr=0.05, n_boot=20)
    assert wrong["auroc_oriented"][0] == pytest.approx(1 - a) and wrong["tpr_at_fpr"][0] < t


def test_detector_table_names_a_typo():
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="not scores"):
        stats.detector_table({"psi": np.arange(4.0)}, y, directions={"pis": "higher"})
    with pytest.raises(ValueError, match="not scores"):
        stats.detector_table({"psi": np.arange(4.0)}, y, seconds_per_sample={"flipd": 1.0})
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        stats.detector_table({"psi": np.arange(4.0)}, y, directions={"psi": "up"})


def test_spread_subset_is_evenly_spread_and_keeps_the_ends():
    idx = np.arange(100, 110)
    assert stats.spread_subset(idx, 4).tolist() == [100, 103, 106, 109]   # positions round(0, 3, 6, 9)
    assert stats.spread_subset(idx, 50).tolist() == idx.tolist()          # n > m: every entry once
    assert stats.spread_subset(np.array([7, 3]), 1).tolist() == [7]
    with pytest.raises(ValueError, match="n >= 1"):
        stats.spread_subset(idx, 0)


# ------------------------------------------------------------------------------------------ label validation
# Every function that takes labels, called the same way: name -> f(scores, labels) -> a number.
_LABEL_TAKERS = {
    "auroc": lambda s, y: stats.auroc(s, y),
    "auroc_ci": lambda s, y: stats.auroc_ci(s, y, n_boot=20)[0],
    "auroc_table": lambda s, y: stats.auroc_table({"psi": s}, y, n_boot=20)["auroc"][0],
    "tpr_at_fpr": lambda s, y: stats.tpr_at_fpr(s, y, 0.1),
    "detector_table": lambda s, y: stats.detector_table({"psi": s}, y, n_boot=20)["auroc"][0],
}


def _encodings(y):
    """The same binary labels ``y`` ``(n,)`` of 0/1 in the encodings a caller may hold (all valid)."""
    b = y.astype(bool)
    return {"bool": b, "int": y.astype(np.int64), "uint8": y.astype(np.uint8), "float": y.astype(float),
            "list": y.tolist(), "object bools": np.array(b.tolist(), dtype=object),
            "Series bool": pd.Series(b), "Series boolean": pd.Series(b, dtype="boolean"),
            "Series Int64": pd.Series(y, dtype="Int64")}


@pytest.mark.parametrize("fn", list(_LABEL_TAKERS))
def test_valid_label_encodings_give_sklearns_auroc(fn):
    """Reference: scikit-learn's roc_auc_score (and, for tpr_at_fpr, the same call with bool labels, itself
    checked against roc_curve above) on the same valid labels; every encoding gives the identical number."""
    s, y = _data(5, 80, ties=True)
    ref = _LABEL_TAKERS[fn](s, y.astype(bool))
    if fn != "tpr_at_fpr":
        assert ref == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for name, lab in _encodings(y).items():
        assert _LABEL_TAKERS[fn](s, lab) == ref, name


def _missing_labels():
    """Labels with two rows (2 and 4) missing, as a pandas merge leaves them, in three encodings."""
    y = np.array([0, 1] * 6, dtype=float)
    y[[2, 4]] = np.nan
    obj = np.array([bool(v) if v == v else None for v in y], dtype=object)
    return {"float NaN": y, "object None": obj, "Series boolean NA": pd.Series(obj, dtype="boolean")}


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # sklearn, casting NaN
@pytest.mark.parametrize("fn", list(_LABEL_TAKERS))
@pytest.mark.parametrize("kind", list(_missing_labels()))
def test_missing_labels_are_refused_like_sklearn(fn, kind):
    """NaN / None / NA labels: scikit-learn refuses them; so does every function here, naming the rows,
    instead of counting them as positives (auroc_table used bool(nan) = True: 0.531 instead of the 0.500 of
    the labelled rows in field case 17). Following the message (drop the rows) gives sklearn's number."""
    s = np.random.default_rng(0).normal(size=12)
    y = _missing_labels()[kind]
    with pytest.raises(ValueError):
        roc_auc_score(np.asarray(y, dtype=float), s)
    with pytest.raises(ValueError, match=r"2 missing value\(s\) \(NaN / None\) at rows \[2, 4\].*drop those rows"):
        _LABEL_TAKERS[fn](s, y)
    keep = ~pd.isna(np.asarray(y, dtype=object))
    if fn != "tpr_at_fpr":
        assert _LABEL_TAKERS[fn](s[keep], np.asarray(y)[keep].astype(float)) == pytest.approx(
            roc_auc_score(np.asarray(y)[keep].astype(float), s[keep]), abs=1e-12)


@pytest.mark.parametrize("fn", list(_LABEL_TAKERS))
@pytest.mark.parametrize("lab, shown, positive", [
    (np.array([1, 2] * 6), "{1, 2}", 2),
    (np.array([-1, 1] * 6), "{-1, 1}", 1),
    (np.array(["id", "ood"] * 6), "{'id', 'ood'}", "ood"),
])
def test_two_class_labels_other_than_0_1_are_refused_with_the_mapping(fn, lab, shown, positive):
    """{1, 2}, {-1, 1} and strings hold two classes: the error says which values it found and how to map them
    (never "0 negatives", which auroc_table reported after bool()). Following it (labels == positive) gives
    sklearn's roc_auc_score of the raw labels, which takes the larger class as positive."""
    s = np.random.default_rng(1).normal(size=lab.size) + (lab == positive)
    with pytest.raises(ValueError, match="found 2 distinct value") as err:
        _LABEL_TAKERS[fn](s, lab)
    msg = str(err.value)
    assert shown in msg and f"labels == {positive!r}" in msg and "negatives" not in msg
    if fn != "tpr_at_fpr":
        assert _LABEL_TAKERS[fn](s, lab == positive) == pytest.approx(roc_auc_score(lab, s), abs=1e-12)


@pytest.mark.parametrize("fn", list(_LABEL_TAKERS))
def test_non_binary_labels_are_refused_like_sklearn(fn):
    """A fraction (0.5) and a third class: sklearn refuses both ("continuous" / "multiclass"), so does geom."""
    s = np.arange(6.0)
    for lab, shown in ((np.array([0, 0.5, 1] * 2), "{0.0, 0.5, 1.0}"), (np.array([0, 1, 2] * 2), "{0, 1, 2}")):
        with pytest.raises(ValueError):
            roc_auc_score(lab, s)
        with pytest.raises(ValueError, match="found 3 distinct value") as err:
            _LABEL_TAKERS[fn](s, lab)
        assert shown in str(err.value)


@pytest.mark.parametrize("fn", list(_LABEL_TAKERS))
def test_scores_must_be_finite_numbers_of_the_labels_length(fn):
    y = np.array([0, 1] * 4)
    s = np.arange(8.0)
    for bad, match in ((np.r_[s[:3], np.nan, s[4:]], r"NaN or inf value\(s\) at rows \[3\]"),
                       (np.r_[s[:7], np.inf], r"NaN or inf value\(s\) at rows \[7\]"),
                       (s[:7], "has 7 values for 8 labels"),
                       (np.array(["a"] * 8), "must be numbers")):
        with pytest.raises(ValueError, match=match):
            _LABEL_TAKERS[fn](bad, y)


def test_auroc_table_names_the_bad_score():
    y = np.array([0, 1] * 4)
    with pytest.raises(ValueError, match=r"score 'nu': 1 NaN or inf value"):
        stats.auroc_table({"psi": np.arange(8.0), "nu": np.r_[np.arange(7.0), np.nan]}, y, n_boot=10)


# ------------------------------------------------------------------------------------------ diversity direction
def test_vendi_trend_equals_brute_force_subsets_and_reads_the_direction():
    """Each level's Vendi is recomputed here from the documented draws (default_rng(seed + d), levels in order,
    m items each); closed form: k orthogonal directions with equal counts give Vendi k."""
    E = np.eye(8)
    # level l holds copies of l + 1 orthogonal directions (Vendi of a balanced subset ~ l + 1: rises)
    X = np.concatenate([np.tile(E[:l + 1], (12 // (l + 1), 1)) for l in range(4)])
    lv = np.concatenate([np.full(12, l) for l in range(4)])
    t = stats.vendi_trend(X, lv, draws=8, frac=0.5, seed=3)
    assert t["m"].iloc[0] == 6 and t.attrs["direction"] == "rises" and t.attrs["peak_level"] == 3
    V = np.empty((8, 4))
    for d in range(8):
        rng = np.random.default_rng(3 + d)
        for j in range(4):
            V[d, j] = stats.vendi(X[rng.choice(np.flatnonzero(lv == j), 6, replace=False)])
    np.testing.assert_allclose(t["vendi"], V.mean(0), rtol=1e-12)
    assert 1 <= t["vendi"].iloc[0] < 1 + 1e-9                      # one direction only: Vendi 1 exactly
    t_rev = stats.vendi_trend(X, 3 - lv, draws=8, frac=0.5, seed=3)  # the same sets, order reversed
    assert t_rev.attrs["direction"] == "falls" and t_rev.attrs["p_rise"] == 0.0
    same = stats.vendi_trend(np.tile(E[:2], (20, 1)), np.repeat([0, 1], 20), draws=8)  # identical sets: no direction
    assert same.attrs["direction"] == "no clear direction"
    with pytest.raises(ValueError, match="at least 2 levels"):
        stats.vendi_trend(X[:3], np.r_[0, 0, 1])


def test_brightness_contrast_and_spearman_ci_against_scipy():
    rng = np.random.default_rng(0)
    imgs = rng.uniform(-1, 1, size=(30, 3, 4, 4))
    bc = stats.brightness_contrast(imgs, value_range=(-1, 1))
    u = (imgs + 1) / 2
    np.testing.assert_allclose(bc.brightness, u.reshape(30, -1).mean(1), rtol=1e-12)
    np.testing.assert_allclose(bc.contrast, u.reshape(30, -1).std(1), rtol=1e-12)
    x = rng.normal(size=400)
    y = x + rng.normal(size=400)
    rho, lo, hi = stats.spearman_ci(x, y, n_boot=400, seed=1)
    assert rho == pytest.approx(st.spearmanr(x, y).statistic, abs=1e-12)
    se = (1 - rho ** 2) / np.sqrt(400 - 3) * 1.06   # Fieller et al. (1957) large-sample s.e. of Spearman's rho
    assert lo < rho < hi and (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.3)
    r0, lo0, hi0 = stats.spearman_ci(x, rng.normal(size=400), n_boot=400)
    assert lo0 < 0 < hi0                            # independent: the interval covers 0
    with pytest.raises(ValueError, match="constant"):
        stats.spearman_ci(x, np.ones(400))


def test_vendi_trend_table_is_vendi_trend_per_pair():
    E = np.eye(8)
    X = np.concatenate([np.tile(E[:l + 1], (12 // (l + 1), 1)) for l in range(4)])
    lv = np.concatenate([np.full(12, l) for l in range(4)])
    tab = stats.vendi_trend_table({"a": X, "b": X[::-1]}, {"up": lv, "down": 3 - lv, "one": np.zeros(48)},
                                  draws=8, seed=3)
    assert list(zip(tab.embedding, tab.descriptor)) == [("a", "up"), ("a", "down"), ("b", "up"), ("b", "down")]
    t = stats.vendi_trend(X, 3 - lv, draws=8, seed=3)
    row = tab.iloc[1]
    assert row.direction == t.attrs["direction"] == "falls" and row.peak_level == t.attrs["peak_level"] + 1
    assert row.vendi == t.vendi.round(2).tolist() and row.m == int(t.m.iloc[0])


# ------------------------------------------------------------------------------------------ sub-populations
def _holm_brute(p):
    """Holm's adjusted p-values from the definition, by loops: the i-th smallest gets
    max over j <= i of min(1, (m - j + 1) p_(j)) (j 1-based)."""
    p = list(p)
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = max(min(1.0, (m - j) * p[order[j]]) for j in range(rank + 1))
    return out


def test_holm_equals_the_definition_and_a_worked_example():
    # worked example (Holm 1979's procedure on 4 tests): sorted 0.01, 0.02, 0.03, 0.04 ->
    # 4 x 0.01 = 0.04, 3 x 0.02 = 0.06, max(0.06, 2 x 0.03) = 0.06, max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(stats.holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06], rtol=1e-12)
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 28, 84):
        p = rng.uniform(0, 1, m) ** 3
        p[rng.integers(0, m, m // 3)] = p[0]  # ties
        got = stats.holm(p)
        np.testing.assert_allclose(got, _holm_brute(p), rtol=1e-12, atol=0)
        assert (got >= p).all() and (got <= 1).all()
    got = stats.holm([0.01, np.nan, 0.02])  # NaN: no test, not counted in m
    np.testing.assert_allclose(got[[0, 2]], [0.02, 0.02], rtol=1e-12)
    assert np.isnan(got[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.5, 1.5])
    with pytest.raises(ValueError, match="shape"):
        stats.holm(np.zeros((2, 2)))


def _kruskal_brute(X):
    """Kruskal-Wallis H from its definition (mid-ranks over all values, tie correction)."""
    n, g = X.shape
    N = n * g
    r = st.rankdata(X.reshape(-1)).reshape(n, g)
    H = 12 / (N * (N + 1)) * sum(n * (r[:, j].mean() - (N + 1) / 2) ** 2 for j in range(g))
    _, t = np.unique(X, return_counts=True)
    H /= 1 - (t ** 3 - t).sum() / (N ** 3 - N)
    return H, st.chi2.sf(H, g - 1)


def _friedman_brute(X):
    """Friedman's chi^2 from its definition (mid-ranks within each row, tie correction)."""
    n, g = X.shape
    r = np.array([st.rankdata(row) for row in X])
    R = r.sum(0)
    chi2 = 12 / (n * g * (g + 1)) * (R ** 2).sum() - 3 * n * (g + 1)
    ties = sum(((c ** 3) - c).sum() for c in (np.unique(row, return_counts=True)[1] for row in X))
    chi2 /= 1 - ties / (n * g * (g ** 2 - 1))
    return chi2, st.chi2.sf(chi2, g - 1)


@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "ties"])
def test_group_tests_equal_the_formulas(integer):
    rng = np.random.default_rng(1)
    unit = rng.normal(0, 3, (20, 1))  # a shared unit effect: the pairing
    X = unit + rng.normal(0, 1, (20, 5)) + np.array([0, 0.3, 0.6, 0.9, 1.2])
    X = np.round(X) if integer else X
    got = stats.group_tests({f"g{j}": X[:, j] for j in range(5)})
    h, p = _kruskal_brute(X)
    c, pc = _friedman_brute(X)
    np.testing.assert_allclose([got["kruskal_h"], got["kruskal_p"], got["friedman_chi2"], got["friedman_p"]],
                               [h, p, c, pc], rtol=1e-10)
    assert (got["n"], got["groups"]) == (20, 5)
    # the pairing: Friedman sees the group shift through the unit effect that Kruskal-Wallis counts as noise
    assert got["friedman_p"] < got["kruskal_p"]


def test_group_tests_without_ranks_give_nan_and_bad_designs_raise():
    got = stats.group_tests({"a": np.zeros(4), "b": np.zeros(4), "c": np.zeros(4)})
    assert all(np.isnan(got[k]) for k in ("kruskal_h", "kruskal_p", "friedman_chi2", "friedman_p"))
    two = stats.group_tests({"a": [1.0, 2, 3], "b": [2.0, 3, 4]})
    assert np.isnan(two["friedman_p"]) and np.isfinite(two["kruskal_p"])  # Friedman needs 3 groups
    with pytest.raises(ValueError, match="one length"):
        stats.group_tests({"a": [1.0, 2, 3], "b": [2.0, 3]})
    with pytest.raises(ValueError, match="NaN"):
        stats.group_tests({"a": [1.0, np.nan, 3], "b": [2.0, 3, 4]})


def _pair_brute(a, b, idx):
    """Mean difference, paired P(a > b) and AUROC of one resample, by loops over units and pairs of units."""
    aa, bb = a[idx], b[idx]
    n = len(idx)
    win = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(aa, bb)) / n
    au = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in aa for y in bb) / n ** 2
    return np.mean(aa - bb), win, au


@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "ties"])
def test_paired_comparisons_equal_brute_force(integer):
    rng = np.random.default_rng(2)
    n = 15
    unit = rng.normal(0, 2, n)
    vals = {g: unit + rng.normal(shift, 1, n) for g, shift in (("x", 0.0), ("y", 0.5), ("z", 2.0))}
    vals = {g: np.round(v) for g, v in vals.items()} if integer else vals
    tab = stats.paired_comparisons(vals, n_boot=300, seed=4)
    assert list(zip(tab.a, tab.b)) == [("x", "y"), ("x", "z"), ("y", "z")]
    idx = np.random.default_rng(4).integers(0, n, (300, n))  # the documented resampling
    for r in tab.itertuples():
        a, b = vals[r.a], vals[r.b]
        point = _pair_brute(a, b, np.arange(n))
        np.testing.assert_allclose([r.mean_diff, r.p_paired, r.auroc], point, rtol=1e-12, atol=1e-15)
        assert r.auroc == pytest.approx(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[a, b]), abs=1e-12)
        boots = np.array([_pair_brute(a, b, i) for i in idx])
        lo, hi = np.quantile(boots, [0.025, 0.975], axis=0)
        np.testing.assert_allclose([r.mean_diff_lo, r.p_paired_lo, r.auroc_lo], lo, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose([r.mean_diff_hi, r.p_paired_hi, r.auroc_hi], hi, rtol=1e-12, atol=1e-15)
        d = a - b
        assert r.wilcoxon_p == pytest.approx(st.wilcoxon(d).pvalue, rel=1e-12)
    assert tab.set_index(["a", "b"]).loc[("x", "z"), "auroc_hi"] < 0.5  # z is shifted up by 2: clearly separated


def test_paired_bootstrap_keeps_the_pairing():
    """A small shift under a large shared unit effect: the paired statistics see it (P(a > b) = 1, CI at 1); the
    two distributions overlap (AUROC near 0.5), yet resampling units in both groups at once keeps b = a - 0.5 in
    every resample, so the AUROC's CI stays above 0.5, where the stratified bootstrap of two independent samples
    (auroc_ci, the wrong model of this design) is wide and contains 0.5. All-zero differences give no Wilcoxon
    test (NaN)."""
    rng = np.random.default_rng(3)
    unit = rng.normal(0, 10, 40)
    tab = stats.paired_comparisons({"a": unit + 0.5, "b": unit, "c": unit + 0.5}, n_boot=500, seed=0)
    ab = tab.iloc[0]
    assert ab.p_paired == 1 and ab.p_paired_lo == 1 and ab.mean_diff == pytest.approx(0.5)
    assert 0.5 < ab.auroc_lo <= ab.auroc <= ab.auroc_hi < 0.6
    _, lo, hi = stats.auroc_ci(np.r_[unit + 0.5, unit], np.r_[np.ones(40), np.zeros(40)], n_boot=500)
    assert lo < 0.5 < hi and hi - lo > 3 * (ab.auroc_hi - ab.auroc_lo)
    assert ab.wilcoxon_p < 1e-6
    ac = tab.iloc[1]
    assert ac.mean_diff == 0 and ac.p_paired == 0.5 and ac.auroc == 0.5 and np.isnan(ac.wilcoxon_p)
    with pytest.raises(ValueError, match="n_boot"):
        stats.paired_comparisons({"a": unit, "b": unit}, n_boot=0)


def test_variance_shares_equal_the_least_squares_fit():
    """Reference: the residual sum of squares of the additive model fitted by least squares on one-hot unit and
    group columns, and of the unit-only and group-only fits."""
    rng = np.random.default_rng(5)
    n, g = 12, 4
    X = rng.normal(0, 2, (n, 1)) + rng.normal(0, 1, (1, g)) + rng.normal(0, 0.5, (n, g))
    got = stats.variance_shares({j: X[:, j] for j in range(g)})
    y = X.reshape(-1)
    U = np.repeat(np.eye(n), g, axis=0)
    Gd = np.tile(np.eye(g), (n, 1))

    def rss(A):
        return float(((y - A @ np.linalg.lstsq(A, y, rcond=None)[0]) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    np.testing.assert_allclose([got["residual"], 1 - got["group"], 1 - got["unit"]],
                               [rss(np.c_[U, Gd]) / total, rss(np.c_[np.ones(n * g), Gd]) / total,
                                rss(np.c_[np.ones(n * g), U]) / total], rtol=1e-10)
    assert np.isnan(stats.variance_shares({"a": np.ones(3), "b": np.ones(3)})["group"])


def test_half_samples():
    s = stats.half_samples(10, 50, seed=1)
    assert s.shape == (50, 5) and all(len(set(r)) == 5 for r in s) and s.min() >= 0 and s.max() <= 9
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(s, [rng.choice(10, 5, replace=False) for _ in range(50)])
    assert stats.half_samples(3, 2).shape == (2, 2)  # at least 2 units
    for bad in ((1, 5), (10, 0), (10, 5, 0.0)):
        with pytest.raises(ValueError):
            stats.half_samples(*bad)


def test_diversity_by_group_closed_forms_and_brute_force():
    """Closed forms: orthogonal rows give Vendi = number of rows, identical rows 1. Group 'flat' (identical
    rows) scores highest, 'spread' (orthogonal rows) lowest: the higher-scoring group is less diverse in every
    draw. Brute force: the documented loop over half-samples with stats.vendi and scipy's spearmanr."""
    n = 8
    e = np.eye(n)
    feats = {"spread": e, "flat": np.ones((n, n)), "mixed": np.r_[e[:4], e[:4]]}
    scores = {"spread": np.arange(n) * 0.1, "flat": np.arange(n) + 10.0, "mixed": np.arange(n) + 5.0}
    tab = stats.diversity_by_group(feats, scores, draws=30, seed=2)
    t = tab.set_index("group")
    np.testing.assert_allclose(t.vendi[["spread", "flat", "mixed"]], [n, 1, 4], rtol=1e-9)
    assert (t.m == 4).all() and t.loc["spread", "vendi_sub"] == pytest.approx(4, rel=1e-9)
    a = tab.attrs
    assert (a["top"], a["bottom"]) == ("flat", "spread")
    assert a["diff"] == pytest.approx(1 - n // 2) and a["p_top_higher"] == 0  # at m = 4 items: 1 - 4
    assert a["direction"] == "higher score, less diverse"
    sub = stats.half_samples(n, 30, seed=2)
    V = np.array([[stats.vendi(feats[g][i]) for g in feats] for i in sub])
    M = np.array([[scores[g][i].mean() for g in feats] for i in sub])
    rho = [st.spearmanr(m, v).statistic for m, v in zip(M, V)]
    np.testing.assert_allclose(t.vendi_sub[list(feats)], V.mean(0), rtol=1e-12)
    np.testing.assert_allclose(t.vendi_lo[list(feats)], np.quantile(V, 0.025, axis=0), rtol=1e-12)
    np.testing.assert_allclose([a["spearman"], a["spearman_lo"], a["spearman_hi"]],
                               [np.mean(rho), *np.quantile(rho, [0.025, 0.975])], rtol=1e-12)
    dv = V[:, 1] - V[:, 0]  # top 'flat' minus bottom 'spread'
    np.testing.assert_allclose([a["diff"], a["diff_lo"], a["diff_hi"]], [dv.mean(), *np.quantile(dv, [0.025, 0.975])],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        stats.diversity_by_group({"spread": e}, scores)


# ------------------------------------------------------------------------------------------ Frechet distance
def exact_moment_sample(mu, sigma, n, seed):
    """n points whose sample mean is mu and sample covariance (ddof 1) is sigma exactly."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return mu + z @ np.linalg.cholesky(sigma).T


def test_frechet_distance_of_gaussians_in_closed_form():
    """Commuting (diagonal) covariances: ||dmu||^2 + sum (sqrt(a_i) - sqrt(b_i))^2; S1 = I: ||dmu||^2 + d + tr S2 -
    2 sum sqrt(eig S2); feature sets with exactly these moments give the same number."""
    from geom.stats import frechet_distance, frechet_distance_gaussians
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance_gaussians(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    A = np.random.default_rng(1).standard_normal((3, 3))
    S2 = A @ A.T + 0.5 * np.eye(3)
    want2 = ((m1 - m2) ** 2).sum() + 3 + np.trace(S2) - 2 * np.sqrt(np.linalg.eigvalsh(S2)).sum()
    assert frechet_distance_gaussians(m1, np.eye(3), m2, S2) == pytest.approx(want2, rel=1e-12)
    fa, fb = exact_moment_sample(m1, np.eye(3), 40, 2), exact_moment_sample(m2, S2, 60, 3)
    assert frechet_distance(fa, fb) == pytest.approx(want2, rel=1e-10)
    assert frechet_distance(fa, fa) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("n, d", [(200, 5), (30, 50)])
def test_frechet_distance_agrees_with_scipy_sqrtm(n, d):
    """pytorch-fid's formula, tr sqrtm(S1 @ S2) by scipy.linalg.sqrtm, on random data (full rank and n < d)."""
    from scipy.linalg import sqrtm

    from geom.stats import frechet_distance
    rng = np.random.default_rng(n)
    fa, fb = rng.standard_normal((n, d)), 0.5 + 1.5 * rng.standard_normal((n + 7, d)) @ rng.standard_normal((d, d)) / d
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    ref = ((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(sqrtm(s1 @ s2)).real
    assert frechet_distance(fa, fb) == pytest.approx(ref, rel=1e-7, abs=1e-8 * np.trace(s1 + s2))


def test_frechet_distance_ci_and_errors():
    from geom.stats import TooFewSamplesError, frechet_distance, frechet_distance_ci
    rng = np.random.default_rng(0)
    fa, fb = rng.standard_normal((80, 4)), rng.standard_normal((80, 4)) + 1.0
    fd, lo, hi = frechet_distance_ci(fa, fb, n_boot=100, seed=1)
    assert fd == frechet_distance(fa, fb) and lo < hi
    assert (fd, lo, hi) == frechet_distance_ci(fa, fb, n_boot=100, seed=1)
    with pytest.raises(TooFewSamplesError, match="needs at least 2"):
        frechet_distance(fa[:1], fb)
    with pytest.raises(TooFewSamplesError, match="at least 10"):
        frechet_distance(fa[:5], fb, min_samples=10)
    with pytest.raises(ValueError, match="one feature space"):
        frechet_distance(fa, fb[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 4), np.nan), fb)
