"""geom.polarity: polarity weights against their closed form on toys (prod sigma^rho normalised), rho = 0 is
uniform, no overflow at the psi magnitudes of real decoders, resampling reproduces the weighted mean of psi,
Kish ESS limits, the per-rho table and the diversity table (Vendi) against brute force, and bad input."""
import math

import numpy as np
import pandas as pd
import pytest

from geom import polarity
from geom.stats import vendi

# toy pool: products of singular values 1, 2, 3, 4 -> psi = log of them
SIGMA_PROD = np.array([1.0, 2.0, 3.0, 4.0])
PSI = np.log(SIGMA_PROD)


@pytest.mark.parametrize("rho", [-2.0, -1.0, 0.5, 1.0, 2.0, 3.0])
def test_weights_are_normalised_powers_of_the_singular_value_product(rho):
    expected = SIGMA_PROD ** rho / (SIGMA_PROD ** rho).sum()  # closed form, CVPR 2022: p ∝ prod sigma^rho
    np.testing.assert_allclose(polarity.polarity_weights(PSI, rho), expected, rtol=1e-14, atol=0)


def test_integer_rho_exact_fractions():
    np.testing.assert_allclose(polarity.polarity_weights(PSI, 1), [0.1, 0.2, 0.3, 0.4], rtol=1e-14)
    np.testing.assert_allclose(polarity.polarity_weights(PSI, 2), np.array([1, 4, 9, 16]) / 30, rtol=1e-14)


def test_rho_zero_is_uniform():
    psi = np.random.default_rng(0).normal(-200, 30, 50)
    np.testing.assert_array_equal(polarity.polarity_weights(psi, 0.0), np.full(50, 1 / 50))
    assert polarity.effective_sample_size(polarity.polarity_weights(psi, 0.0)) == pytest.approx(50, rel=1e-12)


def test_no_overflow_at_decoder_psi_magnitudes():
    # psi of real decoders is ~ -200 ... -300; exp(rho psi) underflows to 0 in float64 for rho psi < -745
    psi = np.array([-1000.0, -1000.0 + math.log(2.0), -1000.0 + math.log(5.0)])
    for rho in (1.0, -1.0):
        w = polarity.polarity_weights(psi, rho)
        expected = np.array([1.0, 2.0, 5.0]) ** rho
        np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-12)
    w = polarity.polarity_weights(np.array([0.0, 1000.0]), 5.0)  # exp(5000) overflows without the shift
    np.testing.assert_array_equal(w, [0.0, 1.0])


def test_resampled_mean_matches_weighted_mean():
    rng = np.random.default_rng(1)
    psi = rng.normal(0.0, 1.0, 200)
    for rho in (-1.5, 0.0, 1.0):
        w = polarity.polarity_weights(psi, rho)
        target = float(w @ psi)
        n = 100_000
        idx = polarity.polarity_resample(psi, rho, n, seed=7)
        se = math.sqrt(float(w @ (psi - target) ** 2) / n)
        assert abs(psi[idx].mean() - target) < 5 * se, (rho, psi[idx].mean(), target, se)
        # empirical frequencies agree with the weights (chi-square-free bound: 5 binomial SEs per latent)
        freq = np.bincount(idx, minlength=psi.size) / n
        assert (np.abs(freq - w) <= 5 * np.sqrt(w * (1 - w) / n) + 1e-12).all()


def test_resample_without_replacement_is_distinct_and_seeded():
    psi = np.linspace(-3, 3, 30)
    a = polarity.polarity_resample(psi, 2.0, 10, seed=3, replace=False)
    assert len(set(a.tolist())) == 10
    np.testing.assert_array_equal(a, polarity.polarity_resample(psi, 2.0, 10, seed=3, replace=False))
    with pytest.raises(ValueError, match="distinct"):
        polarity.polarity_resample(np.array([0.0, 2000.0]), 1.0, 2, replace=False)  # one weight underflows to 0


def test_effective_sample_size_limits():
    assert polarity.effective_sample_size(np.full(8, 1 / 8)) == pytest.approx(8)
    assert polarity.effective_sample_size(np.array([0.0, 1.0, 0.0])) == 1.0
    assert polarity.effective_sample_size(np.array([0.25, 0.75])) == pytest.approx(1 / (0.25 ** 2 + 0.75 ** 2))
    with pytest.raises(ValueError, match="sum to 1"):
        polarity.effective_sample_size(np.array([1.0, 1.0]))


def test_polarity_table_brute_force():
    tab = polarity.polarity_table(PSI, [-1.0, 0.0, 2.0])
    for r in tab.itertuples():
        p = SIGMA_PROD ** r.rho / (SIGMA_PROD ** r.rho).sum()
        assert r.psi_mean == pytest.approx(float(p @ PSI), rel=1e-13)
        assert r.psi_shift == pytest.approx(float(p @ PSI) - PSI.mean(), rel=1e-12, abs=1e-15)
        assert r.ess == pytest.approx(1 / float(p @ p), rel=1e-12)
    assert tab.psi_mean.is_monotonic_increasing  # E_rho[psi] is increasing in rho (its derivative is Var_rho psi)


def test_polarity_diversity_matches_brute_force():
    rng = np.random.default_rng(2)
    psi = rng.normal(0, 1, 40)
    feats = rng.random((40, 6))
    tab = polarity.polarity_diversity(feats, psi, [-2.0, 0.0, 2.0], n=10, draws=4, seed=11)
    assert list(tab.columns) == ["rho", "vendi", "vendi_lo", "vendi_hi", "psi_mean", "psi_lo", "psi_hi"]
    for r in tab.itertuples():
        v = [vendi(feats[polarity.polarity_resample(psi, r.rho, 10, seed=11 + d, replace=False)]) for d in range(4)]
        m = [psi[polarity.polarity_resample(psi, r.rho, 10, seed=11 + d, replace=False)].mean() for d in range(4)]
        assert r.vendi == pytest.approx(np.mean(v), rel=1e-12)
        assert r.psi_mean == pytest.approx(np.mean(m), rel=1e-12)
        assert r.vendi_lo <= r.vendi <= r.vendi_hi
    assert tab.psi_mean.iloc[0] < tab.psi_mean.iloc[1] < tab.psi_mean.iloc[2]
    assert isinstance(tab, pd.DataFrame)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN or inf"):
        polarity.polarity_weights(np.array([0.0, -np.inf]), 1.0)
    with pytest.raises(ValueError, match="empty"):
        polarity.polarity_weights(np.array([]), 1.0)
    with pytest.raises(ValueError, match="rho"):
        polarity.polarity_weights(PSI, float("nan"))
    with pytest.raises(ValueError, match="n must"):
        polarity.polarity_resample(PSI, 1.0, 0)
    with pytest.raises(ValueError, match="features"):
        polarity.polarity_diversity(np.ones((3, 2)), PSI, [0.0], n=2)
