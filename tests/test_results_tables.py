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
