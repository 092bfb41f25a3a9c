"""The Hessian study of the 2D Ising model on a grid regular in temperature and field (``geom.fisher``; Lobashev
et al., ICML 2025, Ising experiment; notebooks 10 and 15): the grid and its natural coordinates, the error
tables of estimated metrics against the exact or long-run reference (full metric, heat capacity at ``h = 0``
against Kaufman, susceptibility along ``h``), the thermodynamic curves of a learned ``F`` on fine lines, and the
Cramer-Rao width of the posterior in grid cells.

Conventions: ``p(s) ~ exp(K sum_<ij> s_i s_j + B sum_i s_i)`` with natural parameters ``theta = (K, B) = (1/T,
h/T)`` (J = k_B = 1); a (T, h) grid is a ``ParamGrid`` with ``t1 = T`` (n_T,), ``t2 = h`` (n_h,), points row-major,
``n_h`` odd and the ``h`` axis symmetric so that column ``n_h // 2`` is ``h = 0``; metrics are (G, 2, 2) in
natural coordinates, as ``geom.physics`` returns them."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .. import physics
from ..metric import metric
from .evaluate import error_summary, interior_mask, not_positive_definite_fraction
from .posterior import ParamGrid


def temperature_field_grid(T_axis: torch.Tensor, h_axis: torch.Tensor, sigma: float = 1.0) -> ParamGrid:
    """The ``ParamGrid`` regular in ``(T, h)`` (``T_axis`` (n_T,), ``h_axis`` (n_h,)) whose natural coordinates
    are ``(K, B) = (1/T, h/T)``, so that the Hessian of a learned ``F(theta)`` is the Fisher metric in natural
    coordinates; ``sigma``: target smoothing in grid cells. Raises ``ValueError`` for a temperature <= 0."""
    if not bool((torch.as_tensor(T_axis) > 0).all()):
        raise ValueError(f"temperatures must be > 0 (K = 1/T), got T_axis from {float(T_axis.min())}")
    pts = torch.stack(torch.meshgrid(T_axis.double(), h_axis.double(), indexing="ij"), -1).reshape(-1, 2)
    return ParamGrid(T_axis, h_axis, natural=torch.stack([1 / pts[:, 0], pts[:, 1] / pts[:, 0]], 1), sigma=sigma)


def cramer_rao_sd_cells(g: torch.Tensor, points: torch.Tensor, N: int, cell) -> dict:
    """Width of the posterior of ``(T, h)`` from one bundle of ``N`` samples, in grid cells, per axis: the
    Cramer-Rao standard deviation ``1 / sqrt(N g_ii)`` with ``g`` (m, 2, 2) the reference metric in natural
    coordinates transformed to ``(T, h)`` (``theta = (1/T, h/T)``: ``g_TT = (g_KK + 2 h g_KB + h^2 g_BB) / T^4``,
    ``g_hh = g_BB / T^2``; the other coordinate held fixed), at ``points`` (m, 2) = (T, h); ``cell`` = (dT, dh).
    Returns ``{"T": {median, q10, q90}, "h": {...}}`` over the points (10% / 90% quantiles)."""
    T, h = points[:, 0].double(), points[:, 1].double()
    g_TT = (g[:, 0, 0] + 2 * h * g[:, 0, 1] + h ** 2 * g[:, 1, 1]) / T ** 4
    g_hh = g[:, 1, 1] / T ** 2
    out = {}
    for name, gi, c in (("T", g_TT, cell[0]), ("h", g_hh, cell[1])):
        sd = 1 / torch.sqrt(N * gi) / c
        q = torch.quantile(sd, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        out[name] = dict(median=q[1].item(), q10=q[0].item(), q90=q[2].item())
    return out


def ising2d_error_rows(L: int, ests: dict, g_ref: torch.Tensor, T_axis: torch.Tensor, h_axis: torch.Tensor,
                       grid_name: str, window=None) -> tuple[pd.DataFrame, dict]:
    """Error table of metric estimates of the L x L model against the reference on a (T, h) grid (all of it, or
    the points inside ``window = ((T_lo, T_hi), (h_lo, h_hi))``), one row per estimator of ``ests``
    (name -> (G, 2, 2)): median relative Frobenius error of the full metric (all points and >= 2 cells from the
    edge, ``error_summary``), median relative error of the heat capacity at ``h = 0`` against Kaufman's exact one
    (:func:`geom.physics.ising2d_heat_capacity_kaufman`) and the grid temperature of its peak, median relative
    error of the susceptibility along ``h`` against the reference's at the grid temperatures nearest 3.0 and 2.0
    (``chi_median_rel_error_T3`` / ``_T2``; NaN where the points used do not reach that temperature), the
    not-positive-definite and NaN fractions. Returns the table and ``{"T3": row, "T2": row}`` (grid row of the
    susceptibility temperatures, or None)."""
    NT, NH = len(T_axis), len(h_axis)
    if g_ref.shape != (NT * NH, 2, 2) or NH % 2 == 0:
        raise ValueError(f"g_ref must be (n_T * n_h, 2, 2) = ({NT * NH}, 2, 2) on a grid with an odd n_h "
                         f"(h = 0 in the middle), got {tuple(g_ref.shape)} with n_h = {NH}")
    Tg = T_axis.double()
    tsel, hsel = _axis_selection(T_axis, h_axis, window)
    sel = (tsel[:, None] & hsel[None, :]).reshape(-1)
    interior = interior_mask(NT, NH)[sel]
    j0 = NH // 2  # h = 0 (NH odd, symmetric range)
    Ts = Tg[tsel]
    C_kauf = physics.ising2d_heat_capacity_kaufman(L, Ts)
    rows_T = torch.nonzero(tsel)[:, 0]
    it_chi = {}
    for tag, target in (("T3", 3.0), ("T2", 2.0)):
        k = physics.nearest_row(Ts, target)
        it_chi[tag] = None if k is None else int(rows_T[k])
    rows = []
    for name, g in ests.items():
        gr = g.reshape(NT, NH, 2, 2)
        C = physics.ising2d_heat_capacity(gr[tsel, j0], Ts, L)
        summary = error_summary(g[sel], g_ref[sel], interior)
        row = dict(L=L, model=f"ising2d_L{L}", estimator=name, metric_median_rel_error=summary["median_rel_error"],
                   metric_median_rel_error_interior=summary["median_rel_error_interior"],
                   C_median_rel_error=((C - C_kauf).abs() / C_kauf).nanmedian().item(),
                   C_peak_T_grid=Ts[torch.nan_to_num(C, nan=-1.0).argmax()].item())
        for tag, it in it_chi.items():
            if it is None:
                row[f"chi_median_rel_error_{tag}"] = float("nan")
                continue
            chi = physics.ising2d_susceptibility(gr[it, hsel], Tg[it], L)
            chi_ref = physics.ising2d_susceptibility(g_ref.reshape(NT, NH, 2, 2)[it, hsel], Tg[it], L)
            row[f"chi_median_rel_error_{tag}"] = ((chi - chi_ref).abs() / chi_ref).nanmedian().item()
        row["not_pd_fraction"] = not_positive_definite_fraction(g[sel])
        row["frac_nan"] = summary["frac_nan"]
        row["grid"] = grid_name
        rows.append(row)
    return pd.DataFrame(rows), it_chi


def metric_error_row(g: torch.Tensor, g_ref: torch.Tensor, n_T: int, n_h: int) -> dict:
    """Errors of one metric estimate ``g`` against the exact ``g_ref`` (both (n_T * n_h, 2, 2)) on a (T, h)
    grid: median relative Frobenius error over the grid and >= 2 cells from its edge, median relative error of
    the heat capacity at ``h = 0`` (``C ~ g_KK / T^2``, so the relative error of ``g_KK`` on the column
    ``n_h // 2``), the not-positive-definite and NaN fractions (notebook 15)."""
    interior = interior_mask(n_T, n_h)
    s = error_summary(g, g_ref, interior)
    j0 = n_h // 2
    gKK, rKK = g.reshape(n_T, n_h, 2, 2)[:, j0, 0, 0], g_ref.reshape(n_T, n_h, 2, 2)[:, j0, 0, 0]
    return dict(metric_median_rel_error=s["median_rel_error"],
                metric_median_rel_error_interior=s["median_rel_error_interior"],
                C_median_rel_error=((gKK - rKK).abs() / rKK).nanmedian().item(),
                not_pd_fraction=not_positive_definite_fraction(g), frac_nan=s["frac_nan"])


@dataclass
class ThermoCurves:
    """Result of :func:`ising2d_thermo_curves`: the fine lines ``T_fine`` (n,) at ``h = 0`` and ``h_fine`` (m,);
    Kaufman's exact heat capacity ``C_exact`` (n,) on ``T_fine``; per learned ``F`` (name ->): the heat capacity
    ``C`` (n,) and the not-positive-definite fraction ``not_pd`` of its metric on the ``h = 0`` line; the
    susceptibility ``chi`` {grid row -> {name -> (m,)}} along ``h_fine`` at each requested grid temperature (with
    ``"exact"``, the transfer matrix's, for L <= 10)."""

    T_fine: torch.Tensor
    h_fine: torch.Tensor
    C_exact: torch.Tensor
    C: dict
    not_pd: dict
    chi: dict

    def peaks(self) -> dict:
        """``{name: (T at the maximum of C, maximum of C)}`` for ``"exact"`` then each learned ``F``, on
        ``T_fine``."""
        curves = {"exact": self.C_exact, **self.C}
        return {k: (self.T_fine[c.argmax()].item(), c.max().item()) for k, c in curves.items()}


def ising2d_thermo_curves(Fs: dict, L: int, T_range, h_range, T_axis: torch.Tensor, rows, exact: bool = False,
                          n_T: int = 201, n_h: int = 81) -> ThermoCurves:
    """Heat capacity at ``h = 0`` on ``n_T`` temperatures over ``T_range`` and susceptibility on ``n_h`` fields
    over ``h_range`` at the grid temperatures ``T_axis[rows]`` (None entries skipped), of every learned
    log-partition ``Fs`` (name -> F: (m, 2) -> (m,), natural coordinates), from the Hessian of ``F``
    (``geom.metric.metric``); with ``exact`` (L <= 10) also the transfer matrix's susceptibility. ``T_range``,
    ``h_range``: the (lo, hi) of the grid as given (not the float32 axes). Returns a :class:`ThermoCurves`."""
    T_fine = torch.linspace(*T_range, n_T, dtype=torch.float64)
    h_fine = torch.linspace(*h_range, n_h, dtype=torch.float64)
    Tg = T_axis.double()
    theta_T = torch.stack([1 / T_fine, 0 * T_fine], 1)
    g_T = {k: metric(F, theta_T).detach() for k, F in Fs.items()}
    C = {k: physics.ising2d_heat_capacity(g, T_fine, L) for k, g in g_T.items()}
    chi = {}
    for it in rows:
        if it is None:
            continue
        th = torch.stack([torch.ones_like(h_fine) / Tg[it], h_fine / Tg[it]], 1)
        chi[it] = {k: physics.ising2d_susceptibility(metric(F, th).detach(), Tg[it], L) for k, F in Fs.items()}
        if exact:
            chi[it]["exact"] = physics.ising2d_susceptibility(physics.ising2d_fisher(L, th), Tg[it], L)
    return ThermoCurves(T_fine, h_fine, physics.ising2d_heat_capacity_kaufman(L, T_fine), C,
                        {k: not_positive_definite_fraction(g) for k, g in g_T.items()}, chi)


def window_mask(T_axis: torch.Tensor, h_axis: torch.Tensor, window) -> torch.Tensor:
    """Flat boolean mask (n_T * n_h,) of the points of a row-major (T, h) grid inside ``window = ((T_lo, T_hi),
    (h_lo, h_hi))`` (edges included, to 1e-6): the points of a coarse grid that lie in a zoom window."""
    tsel, hsel = _axis_selection(T_axis, h_axis, window)
    return (tsel[:, None] & hsel[None, :]).reshape(-1)


def _axis_selection(T_axis: torch.Tensor, h_axis: torch.Tensor, window) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (n_T,), (n_h,) of the grid temperatures and fields inside ``window`` (all for None)."""
    if window is None:
        return torch.ones(len(T_axis), dtype=torch.bool), torch.ones(len(h_axis), dtype=torch.bool)
    Tg, hg = T_axis.double(), h_axis.double()
    return ((Tg >= window[0][0] - 1e-6) & (Tg <= window[0][1] + 1e-6),
            (hg >= window[1][0] - 1e-6) & (hg <= window[1][1] + 1e-6))


@dataclass
class Ising2DEvaluation:
    """Result of :func:`ising2d_evaluate`: the error table ``errors`` and the susceptibility rows ``it_chi`` of
    :func:`ising2d_error_rows`, the learned ``curves`` (:class:`ThermoCurves`), the largest difference between
    the reference's heat capacity at ``h = 0`` and Kaufman's ``kaufman_vs_transfer`` (exact reference only, else
    None: a check of the two exact routes) and the grid's temperatures ``T_axis``."""

    errors: pd.DataFrame
    it_chi: dict
    curves: ThermoCurves
    kaufman_vs_transfer: float | None
    T_axis: torch.Tensor

    def summary(self, curve_labels: dict, grid_labels: dict) -> dict:
        """The run's headline numbers, in this order: ``T_chi_low`` / ``T_chi_high`` (the grid temperatures of
        the susceptibility near 2 and 3, None off the grid); ``C_peak_T_exact``, ``C_peak_value_exact`` and, per
        learned ``F`` ``name -> label`` of ``curve_labels``, ``C_peak_T_<label>``, ``C_peak_value_<label>`` (fine
        line); per estimator of ``grid_labels``, ``C_peak_T_<label>_grid`` (grid temperatures);
        ``not_pd_fraction_fine_T_line`` (per learned ``F``) and ``kaufman_vs_transfer_max_abs``."""
        r, pk = self.errors.set_index("estimator"), self.curves.peaks()
        T = {tag: None if it is None else self.T_axis[it].item() for tag, it in self.it_chi.items()}
        out = dict(T_chi_low=T["T2"], T_chi_high=T["T3"])
        for name, lab in {"exact": "exact", **curve_labels}.items():
            out[f"C_peak_T_{lab}"], out[f"C_peak_value_{lab}"] = pk[name]
        out.update({f"C_peak_T_{lab}_grid": r.loc[name, "C_peak_T_grid"] for name, lab in grid_labels.items()})
        return dict(out, not_pd_fraction_fine_T_line=self.curves.not_pd,
                    kaufman_vs_transfer_max_abs=self.kaufman_vs_transfer)


def ising2d_evaluate(L: int, grid: ParamGrid, ests: dict, Fs: dict, g_ref: torch.Tensor, T_range, h_range,
                     grid_name: str, exact: bool = False) -> Ising2DEvaluation:
    """Everything notebook 10 measures of one lattice size on one (T, h) grid (module docstring): the error table
    of the estimates ``ests`` (name -> (G, 2, 2)) against ``g_ref`` (:func:`ising2d_error_rows`, labelled
    ``grid_name``), the heat capacity and susceptibility curves of the learned ``Fs`` (name -> F) on fine lines
    over ``T_range`` / ``h_range`` (:func:`ising2d_thermo_curves`) and, for an ``exact`` (transfer-matrix)
    reference, its heat capacity at ``h = 0`` against Kaufman's. Returns an :class:`Ising2DEvaluation`."""
    NT, NH = grid.shape
    errors, it_chi = ising2d_error_rows(L, ests, g_ref, grid.t1, grid.t2, grid_name)
    curves = ising2d_thermo_curves(Fs, L, T_range, h_range, grid.t1, (it_chi["T2"], it_chi["T3"]), exact)
    kvt = None
    if exact:
        C_ref = physics.ising2d_heat_capacity(g_ref.reshape(NT, NH, 2, 2)[:, NH // 2], grid.t1, L)
        kvt = (C_ref - physics.ising2d_heat_capacity_kaufman(L, grid.t1)).abs().max().item()
    return Ising2DEvaluation(errors, it_chi, curves, kvt, grid.t1)
