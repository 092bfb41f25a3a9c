"""geom.run.Outputs writes what notebooks publish; the runner resolves names and fails early on typos."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geom import outputs, paths, run


def test_outputs_write_json_tables_and_figures(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run.Outputs("99_test", tmp_path, params={"SEED": 1})
    out.results.update(a=np.float32(1.5), b=torch.tensor(2), c=[np.int64(3)], d=float("nan"))
    out.table(pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]}), "t")
    fig, _ = plt.subplots()
    out.savefig(fig, "f")
    doc = json.loads(out.write().read_text())
    assert doc["results"] == {"a": 1.5, "b": 2, "c": [3], "d": None}
    assert doc["parameters"] == {"SEED": 1}
    assert doc["tables"]["t"]["rows"] == 2 and doc["tables"]["t"]["schema"] == {"x": "int64", "y": "float64"}
    assert (tmp_path / "figures" / "99_test" / "f.png").stat().st_size > 0
    assert pd.read_parquet(tmp_path / "data" / "results" / "99_test" / "t.parquet").shape == (2, 2)


# ------------------------------------------------------------------ parameters recorded once (issue 25)
def test_outputs_records_the_parameters_cell_from_the_namespace(tmp_path):
    """With ``namespace``, the record is every name of the notebook's parameters cell (independently parsed
    here with ``ast``) with the namespace's value, nothing else; the injected value wins over the default."""
    import ast
    import jupytext

    src = run.resolve_notebook("00_quickstart")
    cell = next(c for c in jupytext.read(src).cells if "parameters" in (c.metadata.get("tags") or []))
    names = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)]
    assert len(names) >= 3
    ns = {n: i for i, n in enumerate(names)} | {"unrelated": 1, names[0]: "injected"}
    doc = json.loads(run.Outputs("00_quickstart", tmp_path, namespace=ns).write().read_text())
    assert list(doc["parameters"]) == names
    assert doc["parameters"] == {n: ("injected" if n == names[0] else i) for i, n in enumerate(names)}


def test_outputs_namespace_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="run the parameters cell"):
        run.Outputs("00_quickstart", tmp_path, namespace={"SEED": 0})
    with pytest.raises(ValueError, match="not both"):
        run.Outputs("00_quickstart", tmp_path, params={"SEED": 0}, namespace={"SEED": 0})


def test_every_notebook_records_its_parameters_cell():
    """No notebook lists its parameters a second time (the copies drifted: 13 left 7 of 32 out): each creates
    its Outputs with ``namespace=globals()``."""
    import ast

    for src in sorted((paths.ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        calls = [n for n in ast.walk(ast.parse(src.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Outputs"]
        assert len(calls) == 1, f"{src.name}: {len(calls)} Outputs(...) calls, expected one"
        kw = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
        assert kw.get("namespace") == "globals()" and "params" not in kw, (
            f"{src.name}: create Outputs with namespace=globals() (the parameters cell is recorded), not {kw}")


# ------------------------------------------------------------------------------------- provenance of a result
def test_results_json_records_versions_and_cpu_capability(tmp_path):
    """Issue 23: a result says which versions and kernels produced it; the reference is importlib.metadata
    (the installed distributions) and torch's own capability query, read here independently of geom."""
    from importlib import metadata

    doc = json.loads(run.Outputs("99_test", tmp_path).write().read_text())
    assert list(doc)[:4] == ["notebook", "written", "platform", "environment"]  # layout kept, block added
    env = doc["environment"]
    import platform
    assert doc["platform"] == platform.platform() and env["python"] == platform.python_version()
    for name in ("torch", "numpy", "scipy", "pandas", "diffusers", "scikit-learn", "matplotlib", "geom"):
        assert env["packages"][name] == metadata.version(name), name
    assert set(env["packages"]) == set(outputs.RECORDED_PACKAGES)
    for name, version in env["packages"].items():
        try:
            assert version == metadata.version(name), name
        except metadata.PackageNotFoundError:
            assert version is None, name
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads()


def test_missing_package_is_recorded_as_null(monkeypatch):
    monkeypatch.setattr(outputs, "RECORDED_PACKAGES", ("numpy", "no-such-distribution-geom-test"))
    packages = outputs.environment()["packages"]
    assert packages == {"numpy": np.__version__, "no-such-distribution-geom-test": None}


def test_aten_cpu_capability_override_is_recorded(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert outputs.environment()["aten_cpu_capability"] is None
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert outputs.environment()["aten_cpu_capability"] == "default"


def test_cpu_model_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC 7B13 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert outputs._cpu_model(info) == "AMD EPYC 7B13 64-Core Processor"  # not 'model' (17), not the 2nd core
    info.write_text("processor\t: 0\nCPU part\t: 0xd0c\n")  # ARM: no model name
    assert outputs._cpu_model(info) is None
    assert outputs._cpu_model(tmp_path / "missing") is None
    real = Path("/proc/cpuinfo")
    if real.exists():
        import re
        m = re.search(r"^model name\s*:\s*(.*?)\s*$", real.read_text(), re.M)
        assert outputs.environment()["cpu_model"] == (m.group(1) if m else None)


def test_every_dependency_is_recorded_or_named_as_not_affecting_numbers():
    """A dependency added to pyproject.toml must be given a place: its version recorded with each result, or
    named in NOT_RECORDED with the reason."""
    import re
    import tomllib

    deps = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in deps}
    assert not set(outputs.RECORDED_PACKAGES) & set(outputs.NOT_RECORDED)
    assert names - set(outputs.RECORDED_PACKAGES) - set(outputs.NOT_RECORDED) == set()


def test_unknown_notebook_fails_before_running():
    with pytest.raises(FileNotFoundError, match="no notebook"):
        run.main(["00_quickstart", "99_does_not_exist"])


# ------------------------------------------------------------------------------------------ parameter values
SCALARS = ["16", "-3", "0", "1e-5", "0.5", "1E3", "inf", "nan", "True", "False", "None", "3:4", "2024-01-02",
           "no", "yes", "a red circle: on stripes", "", " 7 "]


@pytest.mark.parametrize("text", SCALARS)
def test_scalar_values_follow_papermill(text):
    """Reference: papermill's own CLI conversion of -p values (papermill.cli._resolve_type); geom.run only
    adds null -> None and lower/any-case booleans."""
    from papermill.cli import _resolve_type

    got, ref = run.parse_value(text), _resolve_type(text)
    assert type(got) is type(ref)
    assert got == ref or (isinstance(ref, float) and np.isnan(ref) and np.isnan(got))


@pytest.mark.parametrize("text, want", [
    ("null", None), ("true", True), ("TRUE", True), ("false", False), ("fAlse", False),
    ("[0, 1e-3]", [0, 1e-3]), ("[]", []), ("[1, 2.5, true, null, None, 3:4, 2024-01-02, no]",
                                           [1, 2.5, True, None, None, "3:4", "2024-01-02", "no"]),
    ("['a', \"b\", c, '3', \"null\"]", ["a", "b", "c", "3", "null"]), ("[[0, 1], [1e-4]]", [[0, 1], [1e-4]]),
    ("[draft] a red circle", "[draft] a red circle")])
def test_extended_values(text, want):
    got = run.parse_value(text)
    assert got == want and type(got) is type(want)
    if isinstance(want, list):
        assert [type(v) for v in got] == [type(v) for v in want]


def test_bracket_text_that_is_no_list_is_refused():
    with pytest.raises(ValueError, match="-r NAME TEXT"):
        run.parse_value("[a, [b]")
    with pytest.raises(ValueError, match="-r NAME TEXT"):
        run.parse_value("[a: 1]")  # a mapping in a list: YAML flow syntax, not a list of scalars


PAIRED = '''# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% tags=["parameters"]
K = 8
K2 = 8
FLAG = False
FLAG2 = True
N = 1              # latents (default = 1, as in the paper)
RADIUS = 0.1
NOISES = [0.0]
WORDS = ["x"]
PROMPT = "x"
ASPECT = "1:1"
DAY = "today"
ANSWER = "yes"
Y = None
RAW = "x"
OUT_DIR = "."

# %%
import json
print(json.dumps({k: [type(v).__name__, repr(v)] for k, v in dict(
    K=K, K2=K2, FLAG=FLAG, FLAG2=FLAG2, N=N, RADIUS=RADIUS, NOISES=NOISES, WORDS=WORDS, PROMPT=PROMPT,
    ASPECT=ASPECT, DAY=DAY, ANSWER=ANSWER, Y=Y, RAW=RAW).items()}))
'''


@pytest.fixture
def tiny_notebook(tmp_path, monkeypatch):
    """A paired notebook ``99_types.py`` in a temporary notebooks folder that geom.run resolves."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    (nbdir / "99_types.py").write_text(PAIRED)
    monkeypatch.setattr(run.paths, "NOTEBOOKS", nbdir)
    return nbdir


def test_values_arrive_typed_in_an_executed_notebook(tiny_notebook, tmp_path, capfd, caplog):
    """End to end through the runner's own code path (papermill, python3 kernel): every type a user means
    arrives in the notebook; an absolute --output-dir works; no false "unknown parameter" warning (N's comment
    holds '=', which papermill's inspection cannot parse), no ipykernel TCP warning, no kernel left running."""
    import nbformat

    out = tmp_path / "executed"  # absolute
    argv = ["99_types", "--output-dir", str(out),
            "-p", "K", "null", "-p", "K2", "None", "-p", "FLAG", "true", "-p", "FLAG2", "False",
            "-p", "N", "16", "-p", "RADIUS", "1e-5", "-p", "NOISES", "[0, 1e-3]",
            "-p", "WORDS", "['a', b, null, '3']", "-p", "PROMPT", "a red circle: on stripes",
            "-p", "ASPECT", "3:4", "-p", "DAY", "2024-01-02", "-p", "ANSWER", "no",
            "-y", "Y", "{a: 1, b: [x, 2]}", "-r", "RAW", "16"]
    with caplog.at_level("WARNING"):
        assert run.main(argv) == 0
    import psutil  # the kernel was shut down, not left to notice that its parent exited
    assert not [p for p in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    nb = nbformat.read(out / "99_types.ipynb", as_version=4)
    printed = json.loads(nb.cells[-1].outputs[0]["text"])
    assert printed == {
        "K": ["NoneType", "None"], "K2": ["NoneType", "None"], "FLAG": ["bool", "True"],
        "FLAG2": ["bool", "False"], "N": ["int", "16"], "RADIUS": ["float", "1e-05"],
        "NOISES": ["list", "[0, 0.001]"], "WORDS": ["list", "['a', 'b', None, '3']"],
        "PROMPT": ["str", "'a red circle: on stripes'"], "ASPECT": ["str", "'3:4'"],
        "DAY": ["str", "'2024-01-02'"], "ANSWER": ["str", "'no'"], "Y": ["dict", "{'a': 1, 'b': ['x', 2]}"],
        "RAW": ["str", "'16'"]}
    err = capfd.readouterr().err + caplog.text
    assert "unknown parameter" not in err.lower() and "unable to parse" not in err.lower()
    assert "without encryption" not in err


def test_unknown_parameter_is_an_error(tiny_notebook, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run.main(["99_types", "-p", "RADIUSS", "0.1", "--output-dir", str(tmp_path / "o")])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "'RADIUSS'" in err and "K, K2, FLAG, FLAG2, N, RADIUS" in err
    assert not (tmp_path / "o").exists()  # nothing ran
    with pytest.raises(ValueError, match="no parameter 'RADIUSS'"):
        run.run_notebook("99_types", {"RADIUSS": 0.1}, output_dir=tmp_path / "o")


def test_every_smoke_parameter_is_a_notebook_parameter():
    """notebooks/smoke.yml names only parameters the notebooks have (parsed with ast, not papermill's
    line regex, which misses e.g. 02_toy_ddpm's STEPS and 10_ising_2d's L, NH)."""
    for name in run.notebook_names():
        run.check_parameters(name, run.smoke_parameters(name), origin="smoke.yml")
    assert {"STEPS", "EARLY"} <= set(run.notebook_parameters("02_toy_ddpm"))


def test_interrupt_says_how_to_rerun(monkeypatch, capsys):
    def interrupted(name, params, check_only=False, **kw):
        if not check_only:
            raise KeyboardInterrupt
    monkeypatch.setattr(run, "run_notebook", interrupted)
    assert run.main(["00_quickstart"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run the same command again" in err[0].lower()


def test_smoke_labels_are_placed_once():
    """label_smoke puts one banner on top and one after the injected parameters; labelling twice (a notebook
    re-run in place) does not stack them."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("N = 100", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("N = 4", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(N)")])
    for _ in range(2):
        run.label_smoke(nb, "99_x", {"N": 4, "OUT_DIR": "build/smoke"})
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert [i for i, t in enumerate(tags) if run.SMOKE_TAG in t] == [0, 4]
    assert "`N = 4`" in nb.cells[0].source and "OUT_DIR" not in nb.cells[0].source
    assert "data/results/99_x.json" in nb.cells[0].source and "not results" in nb.cells[0].source
    assert [c.source for c in nb.cells if run.SMOKE_TAG not in c.metadata.get("tags", [])] == \
        ["# title", "N = 100", "N = 4", "print(N)"]


def test_a_variant_publishes_beside_the_plain_run(tmp_path):
    """Issue 27: 13 run on a second model (``MODEL``) must not overwrite the first model's published outputs:
    a variant writes ``<name>--<slug>`` figures, JSON and tables, and records the variant."""
    plain = run.Outputs("99_test", tmp_path, params={"MODEL": "dcgan-faces"})
    other = run.Outputs("99_test", tmp_path, params={"MODEL": "omniart-eyes:amber"}, variant="omniart-eyes:amber")
    assert other.name == "99_test--omniart-eyes_amber" and other.fig_dir.name == other.name
    import pandas as pd

    other.table(pd.DataFrame({"x": [1]}), "t")
    p1, p2 = plain.write(), other.write()
    assert p1.name == "99_test.json" and p2.name == "99_test--omniart-eyes_amber.json"
    assert "variant" not in json.loads(p1.read_text())
    doc = json.loads(p2.read_text())
    assert doc["notebook"] == "99_test" and doc["variant"] == "omniart-eyes_amber"
    assert doc["tables"]["t"]["path"] == "data/results/99_test--omniart-eyes_amber/t.parquet"
    with pytest.raises(ValueError, match="no letters or digits"):
        run.Outputs("99_test", tmp_path, params={}, variant=":/")
