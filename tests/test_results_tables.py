"""The README's cross-model tables quote committed results: every number in them must equal the value in
`data/results/` to the digits printed, so a re-run that moves a number fails here until the README says so.

Issue 17, part 2: the learned Hessian metric against the fluctuation and posterior-covariance baselines at equal
samples, for the Ising chain (09), the 2D Ising model (10) and TASEP (11), in one table."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from geom import paths

README = paths.ROOT / "README.md"
HEADING = "### Hessian geometry: the learned metric against the baselines at equal samples"
ESTIMATORS = ["learned F (unconstrained / convex)", "fluctuation", "posterior covariance"]


def table_rows(heading: str) -> list[list[str]]:
    """Cells of the first markdown table after ``heading`` (header and separator dropped; a blank first cell
    repeats the row above's)."""
    text = README.read_text()
    assert heading in text, f"README has no section {heading!r}"
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    rows = rows[2:]
    for above, row in zip(rows, rows[1:]):
        row[0] = row[0] or above[0]
    return rows


def _errors(notebook: str) -> pd.DataFrame:
    return pd.read_parquet(paths.RESULTS / notebook / "errors.parquet")


def committed(model: str, quantity: str) -> dict[str, list[float] | None]:
    """The committed values behind one README row: estimator column -> values (None: not applicable)."""
    m = re.match(r"2D Ising L = (\d+)", model)
    if model.startswith("Ising chain"):
        e = _errors("09_ising_chain").set_index("estimator")
        col = {"full metric": "median_rel_error", "C": "C_median_rel_error", "chi": "chi_median_rel_error"}[quantity]
    elif m:
        e = _errors("10_ising_2d")
        e = e[e.L == int(m.group(1))]
        if "grid" in e:
            e = e[e.grid == ("coarse_in_zoom_window" if "inside the zoom window" in model
                             else "zoom" if "zoom" in model else "coarse")]
        e = e.set_index("estimator")
        col = {"full metric": "metric_median_rel_error", "C at h = 0": "C_median_rel_error",
               "chi at T ~ 3": "chi_median_rel_error_T3", "chi at T ~ 2": "chi_median_rel_error_T2"}[quantity]
    elif model.startswith("TASEP"):
        assert quantity == "full metric", quantity
        s = pd.read_parquet(paths.RESULTS / "11_tasep" / "stages.parquet")
        s = s[s.posterior == "learned"].set_index("metric_from")["median_rel_error"]
        return {ESTIMATORS[0]: [s["log_partition_fit"], s["log_partition_fit_convex"]], ESTIMATORS[1]: None,
                ESTIMATORS[2]: [s["posterior_covariance"]]}
    else:
        raise AssertionError(f"README row for an unknown model {model!r}: give it a rule here")
    v = e[col]
    return {ESTIMATORS[0]: [v["hessian_of_learned_F"], v["hessian_of_learned_F_convex"]],
            ESTIMATORS[1]: [v["fluctuation_baseline"]], ESTIMATORS[2]: [v["posterior_covariance_baseline"]]}


def printed(cell: str) -> list[tuple[float, float]] | None:
    """'0.117 / 0.100' -> [(0.117, 5e-4), (0.100, 5e-4)]: each value with half a unit of its last digit.
    'n/a ...' -> None. Bold markers are ignored."""
    cell = cell.replace("*", "")
    if cell.startswith("n/a"):
        return None
    out = []
    for part in cell.split("/"):
        num = re.fullmatch(r"\s*(\d+(?:\.(\d+))?)\s*", part)
        assert num, f"not a number: {part!r} in {cell!r}"
        out.append((float(num.group(1)), 0.5 * 10.0 ** -len(num.group(2) or "")))
    return out


def test_table_has_every_model():
    models = {r[0] for r in table_rows(HEADING) if r[0]}
    for m in ["Ising chain", "2D Ising L = 8", "2D Ising L = 32", "2D Ising L = 64", "TASEP"]:
        assert any(x.startswith(m) for x in models), (m, models)


def test_parser_reads_digits_and_not_applicable():
    assert printed("0.117 / **0.100**") == [(0.117, 5e-4), (0.100, 5e-4)]
    assert printed("11.5") == [(11.5, 0.05)]
    assert printed("n/a (not an exponential family)") is None
    with pytest.raises(AssertionError, match="not a number"):
        printed("about 0.1")


@pytest.mark.parametrize("row", table_rows(HEADING), ids=lambda r: f"{r[0]}|{r[1]}")
def test_every_number_is_the_committed_one(row):
    model, quantity, *cells = row
    assert len(cells) >= len(ESTIMATORS), row
    want = committed(model.replace("*", ""), quantity)
    for name, cell in zip(ESTIMATORS, cells):
        got = printed(cell)
        if want[name] is None or got is None:
            assert want[name] is None and got is None, (model, quantity, name, cell)
            continue
        assert len(got) == len(want[name]), (model, quantity, name, cell)
        for (x, half), v in zip(got, want[name]):
            assert abs(x - v) <= half + 1e-12, f"{model}, {quantity}, {name}: README says {x}, results say {v:.4g}"


# ---------------------------------------------------------------------------------------------------------------
# "Results at a glance" (issue 24): every number of every row is a committed result (or a stated parameter).

GLANCE = "### Results at a glance"


def _json(notebook: str) -> dict:
    import json
    return json.loads((paths.RESULTS / f"{notebook}.json").read_text())


def J(notebook: str, path: str, section: str = "results"):
    """The value at ``path`` ('a/b/[2]') in ``data/results/<notebook>.json``'s ``section``."""
    x = _json(notebook)[section]
    for part in path.split("/"):
        x = x[int(part[1:-1])] if part.startswith("[") else x[part]
    return x


def P(notebook: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(paths.RESULTS / notebook / f"{table}.parquet")


def _det(notebook: str, score: str, col: str) -> float:
    t = P(notebook, "detector_table").set_index("score")
    return float(t.loc[score, col])


def _early06() -> int:
    """Notebook 06's early window ``EARLY_STEPS`` (its parameters cell: what the full run uses)."""
    from geom.run import notebook_parameters
    return int(notebook_parameters(R06)["EARLY_STEPS"])


def _scores06(unit: str) -> pd.DataFrame:
    """Notebook 06's memorisation scores per ``unit`` (``"prompt"`` or ``"trajectory"``) and the label, recomputed
    from the committed trajectories (``memorisation_trajectories``) as the notebook computes them: Wen et al. over all
    steps and over the first ``EARLY_STEPS`` (``trajectories.wen_score``), final psi (per prompt: the mean over the
    prompt's trajectories). Issue 24 added the all-step and the per-prompt rows; the trajectories are deterministic,
    so these are the numbers the notebook's full re-run publishes (``test_06_recomputed_scores_are_the_published_ones``
    checks the recomputation on the rows already published)."""
    from geom import trajectories as tr
    mem = P(R06, "memorisation_trajectories")
    by = {"prompt": "prompt", "trajectory": "sample"}[unit]
    s = pd.DataFrame({"wen": tr.wen_score(mem, None, by=by), "wen_early": tr.wen_score(mem, _early06(), by=by)})
    s["psi_final"] = mem[mem.step == J(R06, "NUM_STEPS", "parameters") - 1].groupby(by)["psi"].mean()
    s["memorised"] = mem.groupby(by)["memorised"].first()
    return s


def _auc06(score: str, unit: str, tpr: bool = False) -> list[float]:
    """``[auroc, lo, hi]`` (and the TPR at the detector table's FPR) of ``_scores06(unit)[score]``, with the
    notebook's bootstrap (``stats.auroc_ci``, ``N_BOOT`` resamples, seed ``SEED``, resampling the unit)."""
    from geom import stats
    s = _scores06(unit)
    out = list(stats.auroc_ci(s[score], s["memorised"], n_boot=J(R06, "N_BOOT", "parameters"),
                              seed=J(R06, "SEED", "parameters")))
    return out + ([stats.tpr_at_fpr(s[score], s["memorised"], J(R06, "detector_fpr"))] if tpr else [])


def test_06_recomputed_scores_are_the_published_ones():
    """The recomputation behind 06's new README numbers gives the published detector-table rows it can be compared
    with (per trajectory: final psi, and Wen et al. over the first EARLY_STEPS, published as ``wen_baseline`` before
    issue 24 and as ``wen_early`` after the re-run); a wrong window or unit fails here."""
    t = P(R06, "detector_table").set_index("score")
    early = "wen_early" if "wen_early" in t.index else "wen_baseline"
    for score, row in (("psi_final", "psi_final"), ("wen_early", early)):
        want = [t.loc[row, c] for c in ("auroc", "lo", "hi", "tpr_at_fpr")]
        assert _auc06(score, "trajectory", tpr=True) == pytest.approx(want, abs=1e-12), score
    assert _auc06("wen", "trajectory")[0] != pytest.approx(t.loc[early, "auroc"])  # control: all steps differ


def _ising_err(grid: str, L: int, estimator: str, col: str) -> float:
    e = P("10_ising_2d", "errors")
    return float(e[(e.L == L) & (e.grid == grid) & (e.estimator == estimator)][col].iloc[0])


def _lid(estimator: str, stat: str) -> float:
    t = P("14_lid_validation", "table")
    t = t[t.estimator == estimator]
    return {"passes": float(t["pass"].sum()), "mae": float(t.error.abs().mean())}[stat]


def _lid_d12(kind: str, agg) -> float:
    t = P("14_lid_validation", "table")
    return float(agg(t[(t.d == 12) & t.estimator.str.startswith(kind)].estimate))


def _ratio(prefix: str, agg) -> float:
    r = _json("02_toy_ddpm")["results"]
    ts = sorted({int(k.split("_t")[1].split("_")[0]) for k in r if k.startswith(prefix + "_t")})
    return agg(r[f"{prefix}_t{t}_delta_near"] / r[f"{prefix}_t{t}_delta_far"] for t in ts)


def _slope_fit_exact() -> float:
    import math
    a = J("09_ising_chain", "n_sweep/2/hessian_of_F_fit_to_exact_posterior/median_rel_error")
    b = J("09_ising_chain", "n_sweep/32/hessian_of_F_fit_to_exact_posterior/median_rel_error")
    return math.log(b / a) / math.log(32 / 2)


def _zoom_cell_ratio(agg) -> float:
    """Coarse cell / zoom cell of 10's L = 64 grids, per axis (T, h)."""
    c, z = J("10_ising_2d", "runs/64/cell"), J("10_ising_2d", "zoom_runs/64/cell")
    return agg(c[i] / z[i] for i in range(2))


_CPWL = lambda net, r, col: next(x[col] for x in J("13_pretrained_gan", "delta_cpwl")  # noqa: E731
                                 if x["network"] == net and x["radius"] == r)
_S15 = "study/N/{n}/{n}/{est}/metric"
R16 = "16_subpopulations"


def _pair16(descriptor: str, a: str, b: str) -> list[float]:
    """AUROC [lo, hi] of class ``a`` over class ``b`` in 16's pairs table (either orientation stored)."""
    t = P(R16, "pairs")
    t = t[t.descriptor == descriptor]
    row = t[(t.a == a) & (t.b == b)]
    if len(row):
        return [float(row[c].iloc[0]) for c in ("auroc", "auroc_lo", "auroc_hi")]
    row = t[(t.a == b) & (t.b == a)]
    assert len(row) == 1, (descriptor, a, b)
    return [1 - float(row[c].iloc[0]) for c in ("auroc", "auroc_hi", "auroc_lo")]

# Row -> [(printed text, committed value or values)], in the order the texts appear in the row. Each number of
# a text is one value (a range '2.0-2.6' is two); a minus sign counts where it follows a space, '(' or '^'; a text
# that ends in '%' compares values * 100.
R05, R06 = "05_dataset_geometry_ood", "06_denoising_trajectories"
_CI = ["auroc_oriented", "lo_oriented", "hi_oriented", "tpr_at_fpr"]
_LID_KNN = ("mle (global)", "mle (pointwise mean)", "twonn (global)", "twonn (pointwise mean)")
_NOISE = ("0", "0.0001", "0.001", "0.01", "0.1")
_not_pd = lambda est: P("10_ising_2d", "errors").query(  # noqa: E731  (whole grids: coarse per L, and the zoom)
    f"estimator == '{est}' and grid != 'coarse_in_zoom_window'").not_pd_fraction
_stage = lambda p, m, c="median_rel_error": float(  # noqa: E731
    P("11_tasep", "stages").query(f"posterior == '{p}' and metric_from == '{m}'")[c].iloc[0])
_rho = lambda i: J("08_geometry_guidance", f"psi_vs_rho/rho/[{i}]")  # noqa: E731

CLAIMS = {
    "01": [("2,112", lambda: J("01_toy_cpwl", "n_regions")),
           ("= -0.61", lambda: J("01_toy_cpwl", "spearman_psi_logdensity"))],
    "02": [("1.8-2.4x", lambda: [_ratio("late", min), _ratio("late", max)]),
           ("1.3-1.5x", lambda: [_ratio("init", min), _ratio("init", max)])],
    "03": [("~0.5", lambda: min(J("03_vae_dynamics", f"delta_min_noise{s}") for s in _NOISE)),
           ("within 200 steps", lambda: max(J("03_vae_dynamics", f"delta_step_of_min_noise{s}") for s in _NOISE)),
           ("3 seeds", lambda: len(J("03_vae_dynamics", "seeds"))),
           ("p = 0.97", lambda: J("03_vae_dynamics", "psi_anova_p")),
           ("(4.61 -> 4.07", lambda: [J("03_vae_dynamics", f"vendi_trend/generated|efficientnet|psi/vendi/[{i}]") for i in (0, 4)]),
           ("P(top > bottom) 0.00", lambda: J("03_vae_dynamics", "vendi_trend/generated|efficientnet|psi/p_rise")),
           ("(4.52 -> 3.96)", lambda: [J("03_vae_dynamics", f"vendi_trend/generated|efficientnet|nu/vendi/[{i}]") for i in (0, 4)]),
           ("(14.23 -> 8.77)", lambda: [J("03_vae_dynamics", f"vendi_trend/generated|centred_pixels|psi/vendi/[{i}]") for i in (0, 4)]),
           ("(Spearman +0.11)", lambda: J("03_vae_dynamics", "brightness_contrast/generated|psi|brightness/rho"))],
    "04": [("AUROC 0.84", lambda: J("04_latent_slices", "descriptors/psi/auroc_inside")),
           ("40x40", lambda: [J("04_latent_slices", "n_grid")] * 2),
           ("r = 1e-5", lambda: J("04_latent_slices", "RADIUS", "parameters")),
           ("96%", lambda: J("04_latent_slices", "frac_delta_zero")),
           ("r = 0.05", lambda: J("04_latent_slices", "RADIUS_LARGE", "parameters")),
           ("AUROC 0.88", lambda: J("04_latent_slices", "descriptors/delta_large/auroc_inside"))],
    "05": [("1%", lambda: J(R05, "detector_fpr")),
           ("FLIPD 0.98 [0.97, 0.99] / 0.70", lambda: [_det(R05, "flipd", c) for c in _CI]),
           ("control 0.96 [0.95, 0.97] / 0.70", lambda: [_det(R05, "png_bytes", c) for c in _CI]),
           ("psi 0.95 [0.93, 0.97] / 0.74", lambda: [_det(R05, "psi", c) for c in _CI]),
           ("error 0.91 / 0.28", lambda: [_det(R05, "recon_error", c) for c in (_CI[0], _CI[3])]),
           ("nu 0.63", lambda: _det(R05, "nu", _CI[0])),
           ("norm 0.60", lambda: _det(R05, "latent_norm", _CI[0])),
           ("r = 1e-5", lambda: J(R05, "RADIUS", "parameters")),
           ("0.51", lambda: _det(R05, "delta", _CI[0])),
           ],
    "06": [("1%", lambda: J(R06, "detector_fpr")),
           ("psi 0.91 [0.83, 0.97] / 0.59", lambda: [_det(R06, "psi_final", c) for c in _CI]),
           ("(all steps) 0.95 [0.89, 0.99] / 0.81", lambda: _auc06("wen", "trajectory", tpr=True)),
           ("first 5 steps only 0.86", lambda: [_early06(), _auc06("wen_early", "trajectory")[0]]),
           ("FLIPD 0.59 [0.45, 0.73] / 0.00", lambda: [_det(R06, "flipd_cond", c) for c in _CI]),
           ("control 0.51", lambda: _det(R06, "png_bytes", _CI[0])),
           ("norm 0.94", lambda: _det(R06, "latent_norm", _CI[0])),
           ("psi -0.80", lambda: P(R06, "detector_signals")[["latent_norm", "psi_final"]].corr("spearman").iloc[0, 1]),
           ("its 4 seeds", lambda: J(R06, "N_MEM_SEEDS", "parameters")),
           ("Wen et al. 0.95 [0.81, 1.00]", lambda: _auc06("wen", "prompt")),
           ("psi 0.92 [0.77, 1.00]", lambda: _auc06("psi_final", "prompt"))],
    "07": [("(6.57 -> 7.85", lambda: [J("07_level_sets_diversity", f"vendi_trend/efficientnet|psi/vendi/[{i}]") for i in (0, 1)]),
           ("to 7.70", lambda: J("07_level_sets_diversity", "vendi_trend/efficientnet|psi/vendi/[4]")),
           ("P(top > bottom) 1.00", lambda: J("07_level_sets_diversity", "vendi_trend/efficientnet|psi/p_rise")),
           ("level 4 (6.84 -> 8.03)", lambda: [J("07_level_sets_diversity", "vendi_trend/efficientnet|nu/peak_level"),
                                                *[J("07_level_sets_diversity", f"vendi_trend/efficientnet|nu/vendi/[{i}]")
                                                  for i in (0, 3)]]),
           ("(7.14)", lambda: J("07_level_sets_diversity", "vendi_trend/efficientnet|nu/vendi/[4]")),
           ("(4.43 -> 3.22)", lambda: [J("07_level_sets_diversity", f"vendi_trend/pixels_uncentred|psi/vendi/[{i}]")
                                       for i in (0, 4)]),
           ("(Spearman +0.37, +0.39)", lambda: [J("07_level_sets_diversity", f"brightness_contrast/{c}|brightness/rho")
                                                for c in ("psi", "nu")])],
    "08": [("to rho = 5", lambda: _rho(7)),
           ("Spearman 0.68", lambda: J("08_geometry_guidance", "spearman_rho_vs_dpsi")),
           ("+3.1 [1.0, 5.1] at rho = 1.5", lambda: [J("08_geometry_guidance", f"psi_vs_rho/{c}/[6]")
                                                   for c in ("dpsi_mean", "dpsi_low", "dpsi_high")] + [_rho(6)]),
           ("+4.60 at 5", lambda: [J("08_geometry_guidance", "psi_vs_rho/dpsi_mean/[7]"), _rho(7)]),
           ("+4.53 at 15", lambda: [J("08_geometry_guidance", "psi_vs_rho/dpsi_mean/[8]"), _rho(8)]),
           ("Spearman(rho, Vendi) +0.24 [-0.56, 1.00]", lambda: [J("08_geometry_guidance", f"vendi_direction/efficientnet/spearman_{c}")
                                                           for c in ("mean", "low", "high")]),
           ("4 prompts", lambda: J("08_geometry_guidance", "vendi_direction/efficientnet/n_prompts")),
           ("+0.082 at rho = -15", lambda: [J("08_geometry_guidance", "vendi_direction/efficientnet/dvendi_min_rho_mean"),
                                            J("08_geometry_guidance", "RHOS", "parameters")[0]]),
           ("+0.242 at +15", lambda: [J("08_geometry_guidance", "vendi_direction/efficientnet/dvendi_max_rho_mean"),
                                      J("08_geometry_guidance", "RHOS", "parameters")[-1]])],
    "09": [("error 0.066", lambda: J("09_ising_chain", "median_rel_error_learned")),
           ("Z 0.064", lambda: J("09_ising_chain", "median_rel_error_learned_convex")),
           ("fluctuation 0.080", lambda: J("09_ising_chain", "n_sweep/4/fluctuation_baseline/median_rel_error")),
           ("covariance 0.37", lambda: J("09_ising_chain", "median_rel_error_posterior_cov")),
           ("at N = 4", lambda: J("09_ising_chain", "BUNDLE", "parameters")),
           ("N = 2..32", lambda: [min(map(int, J("09_ising_chain", "n_sweep"))),
                                  max(map(int, J("09_ising_chain", "n_sweep")))]),
           ("0.070 -> 0.010", lambda: [J("09_ising_chain", f"n_sweep/{n}/hessian_of_F_fit_to_exact_posterior/median_rel_error")
                                       for n in (2, 32)]),
           ("~N^-0.7", _slope_fit_exact),
           ("best at N = 4", lambda: int(min(J("09_ising_chain", "n_sweep"), key=lambda n: J(
               "09_ising_chain", f"n_sweep/{n}/hessian_of_learned_F/median_rel_error")))),
           ("0.177 at N = 32", lambda: [J("09_ising_chain", "n_sweep/32/hessian_of_learned_F/median_rel_error"), 32])],
    "10": [(f"L = {L} {a} / {b} vs {c}", (lambda L=L: [L] + [_ising_err("coarse", L, est, "C_median_rel_error") for est in (
              "hessian_of_learned_F", "hessian_of_learned_F_convex", "fluctuation_baseline")]))
           for L, a, b, c in [(8, "0.047", "0.052", "0.052"), (32, "0.062", "0.079", "0.090"), (64, "0.31", "0.27", "0.041")]]
          + [("(L = 32: 0.082 vs 0.072)", lambda: [32] + [_ising_err("coarse", 32, e, "metric_median_rel_error")
                                                          for e in ("hessian_of_learned_F", "fluctuation_baseline")]),
             ("at L = 64 a 3-4x", lambda: [64, _zoom_cell_ratio(min), _zoom_cell_ratio(max)]),
             ("T 2.0-2.6", lambda: J("10_ising_2d", "ZOOM_T_RANGE", "parameters")),
             ("h +-0.1", lambda: J("10_ising_2d", "ZOOM_H_RANGE/[1]", "parameters")),
             ("from 0.67 to 0.096", lambda: [_ising_err(g, 64, "hessian_of_learned_F_convex", "metric_median_rel_error")
                                             for g in ("coarse_in_zoom_window", "zoom")]),
             ("fluctuation 0.058", lambda: _ising_err("zoom", 64, "fluctuation_baseline", "metric_median_rel_error")),
             ("peak 2.27 vs exact 2.28", lambda: [J("10_ising_2d", f"zoom_runs/64/C_peak_T_{w}") for w in ("learned_convex", "exact")]),
             ("14-23%", lambda: [_not_pd("hessian_of_learned_F").min(), _not_pd("hessian_of_learned_F").max()]),
             ("0 with the convex", lambda: _not_pd("hessian_of_learned_F_convex").max())],
    "11": [("Fisher 0.315", lambda: _stage("learned", "log_partition_fit")),
           ("Z 0.305", lambda: _stage("learned", "log_partition_fit_convex")),
           ("fit 0.211", lambda: _stage("exact", "log_partition_fit")),
           ("F 0.119", lambda: _stage("none", "best_hessian_fit_to_exact_fisher")),
           ("Z_L 0.45", lambda: _stage("learned", "log_partition_fit", "logz_rel_rmse")),
           ("(0.42", lambda: _stage("exact", "log_partition_fit", "logz_rel_rmse"))],
    "12": [("Spearman -0.26", lambda: J("12_diffusion_phases", "spearman_trace_vs_boundary_distance")),
           ("boundary 2.5", lambda: J("12_diffusion_phases", "lipschitz_ratio_on_off_boundary_median"))],
    "13": [("48x48", lambda: [J("13_pretrained_gan", "N", "parameters")] * 2),
           ("2,000", lambda: J("13_pretrained_gan", "n_pool")),
           ("roughness) 0.74", lambda: J("13_pretrained_gan", "spearman_roughness/psi")),
           ("AUROC 0.25", lambda: J("13_pretrained_gan", "hull_auroc/psi/auroc")),
           ("psi 0.41", lambda: J("13_pretrained_gan", "auroc/psi|all/auroc")),
           ("error 0.90", lambda: J("13_pretrained_gan", "auroc/inversion_error|all/auroc")),
           ("(8.52 -> 9.50", lambda: [J("13_pretrained_gan", f"vendi_trend/efficientnet|psi/vendi/[{i}]") for i in (0, 4)]),
           ("P(top > bottom) 1.00", lambda: J("13_pretrained_gan", "vendi_trend/efficientnet|psi/p_rise")),
           ("30.75 -> 41.72)", lambda: [J("13_pretrained_gan", f"vendi_trend/centred_pixels|psi/vendi/[{i}]") for i in (0, 4)]),
           ("(9.06 -> 8.37)", lambda: [J("13_pretrained_gan", f"vendi_trend/efficientnet|nu/vendi/[{i}]") for i in (0, 4)]),
           ("(25.4 -> 32.1", lambda: [J("13_pretrained_gan", f"polarity/vendi_centred_pixels/[{i}]") for i in (0, 6)]),
           ("7.72 -> 7.78", lambda: [J("13_pretrained_gan", f"polarity/vendi_efficientnet/[{i}]") for i in (0, 6)]),
           ("(4.93 -> 3.64)", lambda: [J("13_pretrained_gan", f"vendi_trend/pixels_uncentred|psi/vendi/[{i}]") for i in (0, 4)]),
           ("(Spearman +0.40)", lambda: J("13_pretrained_gan", "brightness_contrast/psi|brightness/rho")),
           ("r = 1e-5", lambda: J("13_pretrained_gan", "RADIUS", "parameters")),
           ("86-89%", lambda: [J("13_pretrained_gan", "frac_delta_zero_plane"),
                               max(_CPWL(n, "1e-05", "frac_zero") for n in ("with Tanh", "without Tanh"))])],
    "14": [("max(0.5, 0.1 d)", lambda: [J("14_lid_validation", "tolerance/abs"), J("14_lid_validation", "tolerance/rel")]),
           ("11 of 14", lambda: [_lid("flipd", "passes"), len(P("14_lid_validation", "table").query("estimator == 'flipd'"))]),
           ("error 0.33", lambda: _lid("flipd", "mae")),
           ("within 0.2 at d = 12", lambda: [max(abs(P("14_lid_validation", "table").query(
               "estimator == 'flipd' and d == 12").error)), 12]),
           ("10-12 of 14", lambda: [min(_lid(e, "passes") for e in _LID_KNN), max(_lid(e, "passes") for e in _LID_KNN),
                                    len(P("14_lid_validation", "table").query("estimator == 'flipd'"))]),
           ("9.3-11.4 at d = 12", lambda: [min(_lid_d12("mle", min), _lid_d12("twonn", min)),
                                           max(_lid_d12("mle", max), _lid_d12("twonn", max)), 12])],
    "15": [("0.121 / 0.039 / 0.028 / 0.026 / 0.084 at N = 1 / 4 / 8 / 16 / 64",
            lambda: [J("15_ising_2d_study", _S15.format(n=n, est="hessian_of_F_fit_to_exact_posterior"))
                     for n in (1, 4, 8, 16, 64)] + [1, 4, 8, 16, 64]),
           ("0.134 / 0.091 / 0.100 / 0.106 / 0.376",
            lambda: [J("15_ising_2d_study", _S15.format(n=n, est="hessian_of_learned_F_convex")) for n in (1, 4, 8, 16, 64)]),
           ("fluctuation 0.081", lambda: J("15_ising_2d_study", _S15.format(n=8, est="fluctuation_baseline"))),
           ("grid-smoothed 0.060", lambda: J("15_ising_2d_study", _S15.format(n=8, est="fluctuation_smoothed"))),
           ("at N = 64", lambda: 64),
           ("fit to 0.014", lambda: J("15_ising_2d_study", "study/grid/64/0.25/hessian_of_F_fit_to_exact_posterior/metric")),
           ("only to 0.264", lambda: min(J("15_ising_2d_study", f"study/grid/64/{g}/hessian_of_learned_F_convex/metric")
                                         for g in ("0.5", "0.25")))],
    "16": [("8 eye colours x 32", lambda: [len(J(R16, "classes")), J(R16, "n_per_class")]),
           ("p 2.3e-10", lambda: J(R16, "omnibus/psi/kruskal_p")),
           ("18 of 28", lambda: [J(R16, "n_significant_pairs/psi"), 28]),
           ("AUROC 0.92 [0.86, 0.97]", lambda: _pair16("psi", "amber", "brown")),
           ("p 7.9e-17", lambda: J(R16, "omnibus/nu/kruskal_p")),
           ("p 0.35", lambda: J(R16, "omnibus/delta/kruskal_p")),
           ("+0.47 [-0.21, 1.17]", lambda: [J(R16, f"diversity/efficientnet/{c}") for c in ("diff", "diff_lo", "diff_hi")]),
           ("+0.42)", lambda: J(R16, "diversity/efficientnet/spearman")),
           ("+4.38 [3.76, 5.02]", lambda: [J(R16, f"diversity/centred_pixels/{c}") for c in ("diff", "diff_lo", "diff_hi")])],
}

# Text of a row that holds digits but is no committed measurement: the notebooks' own names, an earlier run's
# figure stated as such, a published figure cited. Each is removed before the "no number left unchecked" test.
CONTEXT = {
    "03": ["0.91 in a re-run", "after ~200 steps", "EfficientNet-Lite0"],                 # an earlier run's p-value / time, stated as such
    "04": ["delta = 0", "95% before delta was evaluated in float64"],  # the earlier float32 figure, stated as such
    "05": ["[95% CI]"],
    "06": ["[95% CI]"],
    "07": ["EfficientNet-Lite0"],                                   # the network's name
    "08": ["EfficientNet-Lite0", "CIs across 0"],
    "10": ["2D Ising", "C(T)"],
    "13": ["EfficientNet-Lite0", "delta = 0"],
    "14": ["torus d = 4, 8", "subspace d = 2", "from d = 8"],      # named manifolds
    "15": ["2D Ising L = 8"],
    "16": ["EfficientNet-Lite0"],
}


def glance_rows() -> dict[str, str]:
    return {r[0]: r[1] for r in table_rows(GLANCE)}


def test_glance_has_a_rule_for_every_row():
    rows = glance_rows()
    assert rows, "README's results-at-a-glance table is empty"
    assert set(rows) == set(CLAIMS), (f"rows without a rule: {set(rows) - set(CLAIMS)}; rules without a row: "
                                      f"{set(CLAIMS) - set(rows)}")


_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e-?\d+)?")


def numbers(text: str) -> list[tuple[float, float]]:
    """Every number of ``text`` with half a unit of its last printed digit (0 for '1e-5'): '2.0-2.6' -> two
    positive numbers, '= -0.61' / '(-0.8' / '^-0.7' -> negative ones; '2,112' -> 2112."""
    out = []
    for m in _NUM.finditer(text):
        s = m.group(0).replace(",", "")
        neg = m.start() >= 1 and text[m.start() - 1] == "-" and (m.start() == 1 or text[m.start() - 2] in " ([^")
        half = 0.0 if "e" in s else 0.5 * 10.0 ** -(len(s.split(".")[1]) if "." in s else 0)
        out.append((-float(s) if neg else float(s), half))
    return out


def test_numbers_reads_signs_ranges_and_digits():
    assert numbers("= -0.61") == [(-0.61, 0.005)]
    assert numbers("2.0-2.6") == [(2.0, 0.05), (2.6, 0.05)]
    assert numbers("2,112 and ~N^-0.7 and r = 1e-5") == [(2112.0, 0.5), (-0.7, 0.05), (1e-5, 0.0)]


@pytest.mark.parametrize("row", sorted(CLAIMS))
def test_glance_numbers_are_the_committed_ones(row):
    text = glance_rows()[row]
    pos = 0
    for claim, value in CLAIMS[row]:
        i = text.find(claim, pos)
        assert i >= 0, f"row {row}: {claim!r} not found (in this order) in the README row {text!r}"
        pos = i + len(claim)
        got = numbers(text[max(0, i - 2):i] + claim)[-len(numbers(claim)):]  # the row's context decides a sign
        want = value()
        want = [float(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        if claim.endswith("%"):
            want = [100 * w for w in want]
        assert len(got) == len(want), f"row {row}: {claim!r} has {len(got)} numbers, its rule gives {len(want)}"
        for (x, half), v in zip(got, want):
            assert abs(x - v) <= half + 1e-9 * max(1.0, abs(v)), \
                f"row {row}: README says {x:g} in {claim!r}, data/results say {v:.6g}"


@pytest.mark.parametrize("row", sorted(CLAIMS))
def test_glance_leaves_no_number_unchecked(row):
    text = glance_rows()[row].replace("*", "")
    for claim, _ in CLAIMS[row]:
        text = text.replace(claim, " ", 1)
    for ctx in CONTEXT.get(row, []):
        assert ctx in text, f"row {row}: context text {ctx!r} no longer in the row; update CONTEXT"
        text = text.replace(ctx, " ", 1)
    left = _NUM.findall(text)
    assert not left, f"row {row}: numbers {left} are neither checked against data/results nor stated context: {text!r}"
