"""The package's layers, as a test can see them: data -> models -> geometry -> analysis (-> notebooks).
Every module of geom/ has a layer; a module imports only from its own layer or the layers below, and never a
private name (``_x``) of another module, by ``from m import _x`` or by ``m._x``. Notebooks only orchestrate: none
defines a class or a function longer than ``NOTEBOOK_MAX_FUNCTION_LINES`` lines. See CONTRIBUTING.md,
"Architecture"."""
from __future__ import annotations

import ast
import importlib
import pkgutil

import pytest

import geom
from geom import paths
from geom.run import notebook_names

LAYERS = ["data", "models", "geometry", "analysis"]
LAYER = {
    # data: paths, data sets, exactly solvable reference models and their samplers
    "paths": "data", "deprecation": "data", "seeds": "data", "chunks": "data", "datasets": "data", "shapes": "data", "physics": "data",
    # models: generators, pipelines, sampling procedures of the models, pretrained image embeddings
    "models": "models", "diffusion": "models", "embeddings": "models",
    # geometry: Jacobians and the descriptors, local dimension, linear regions, Hessian geometry, metrics and curves
    "jacobian": "geometry", "complexity": "geometry", "descriptors": "geometry", "lid": "geometry",
    "partition": "geometry", "fisher": "geometry", "metric": "geometry",
    "likelihood": "geometry", "reconstruction": "geometry",
    # analysis: what the notebooks run (slices, trajectories, guidance, sweeps, statistics, figures, runner)
    "stats": "analysis", "planes": "analysis",
    "slices": "analysis", "trajectories": "analysis", "guidance": "analysis", "inversion": "analysis",
    "polarity": "analysis", "phases": "analysis", "sweep": "analysis", "plots": "analysis", "run": "analysis", "outputs": "analysis",
    "notebook_source": "analysis",
    "detectors": "analysis",
}


def modules() -> list[str]:
    """Every module of the package, as dotted names relative to ``geom`` ("models.vae", "sweep", ...)."""
    out = []
    for m in pkgutil.walk_packages(geom.__path__, prefix="geom."):
        out.append(m.name.removeprefix("geom."))
    return sorted(out)


def layer_of(name: str) -> str:
    top = name.split(".")[0]
    if top not in LAYER:
        raise AssertionError(f"geom.{name} has no layer: add it to LAYER in tests/test_architecture.py "
                             f"(and to CONTRIBUTING.md, Architecture)")
    return LAYER[top]


def source_path(name: str):
    rel = name.replace(".", "/")
    p = paths.ROOT / "geom" / f"{rel}.py"
    return p if p.exists() else paths.ROOT / "geom" / rel / "__init__.py"


def imports(name: str, source: str):
    """(imported geom module, imported names, line) of every import of geom code in ``source``, the text of
    module ``name``."""
    tree = ast.parse(source)
    is_pkg = source_path(name).name == "__init__.py" and source_path(name).exists()
    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and (node.module == "geom" or node.module.startswith("geom.")):
                target = node.module.removeprefix("geom").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            folder = paths.ROOT / "geom" / target.replace(".", "/")
            if not target or (folder.is_dir() and all((folder / f"{n}.py").exists() for n in names)):
                for n in names:  # "from . import paths", "from .models import vae": modules
                    yield ".".join(filter(None, [target, n])), [], node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("geom."):
                    yield a.name.removeprefix("geom."), [], node.lineno


def violations(name: str, source: str) -> list[str]:
    """Upward imports and private names imported from other modules, in module ``name`` with text ``source``."""
    out = []
    mine = LAYERS.index(layer_of(name))
    imported = {}
    for target, names, line in imports(name, source):
        theirs = LAYERS.index(layer_of(target))
        if theirs > mine:
            out.append(f"geom/{name} (layer {LAYERS[mine]}) imports geom.{target} (layer {LAYERS[theirs]}) at "
                       f"line {line}: an upward import; pass a function in, or move the code down a layer")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and target != name:
            out.append(f"geom/{name} imports private {private} from geom.{target} (line {line})")
        imported.update({n: target for n in names} if names else {target.split(".")[-1]: target})
    for node in ast.walk(ast.parse(source)):  # m._x where m is a geom module imported by name
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"geom/{name} line {node.lineno}: {node.value.id}.{node.attr} is a private name of "
                       f"geom.{imported[node.value.id]}")
    return out


@pytest.mark.parametrize("name", modules())
def test_module_imports_respect_the_layers(name):
    importlib.import_module(f"geom.{name}")
    if name == "models":
        return  # the models package __init__ only re-exports its own modules
    assert violations(name, source_path(name).read_text()) == []


def test_the_checker_finds_each_kind_of_violation():
    """The checker itself, on sources written to break each rule."""
    assert "upward import" in " ".join(violations("models.vae", "from ..descriptors import describe\n"))
    assert "upward import" in " ".join(violations("datasets", "from geom.models import vae\n"))
    assert "private ['_call']" in " ".join(violations("complexity", "from .jacobian import _call\n"))
    assert "jacobian._call is a private" in " ".join(
        violations("complexity", "from . import jacobian\nx = jacobian._call\n"))
    assert violations("sweep", "from . import descriptors, paths\nfrom .models.generators import load_model\n") == []
    with pytest.raises(AssertionError, match="has no layer"):
        violations("newmodule", "")


# ------------------------------------------------------------------------------------ no import cycle
def module_of_target(target: str, known: set[str]) -> str | None:
    """The module of ``geom`` an import target names (``"models.base"``, ``"sweep"``), or its package when the
    target is a name inside one; None for the top package ``geom`` itself."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """``module -> modules it imports`` over ``sources`` (module name -> source text), every import counted: at
    module level and inside functions (a deferred import still makes the two modules depend on each other)."""
    known = set(sources)
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        targets = {module_of_target(t, known) for t, _, _ in imports(name, source)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each an import cycle), sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_import_graph_has_no_cycle():
    """No two modules of geom/ import each other, directly or through others, at module level or inside a
    function (the one former cycle: models.dcgan <-> models.generators; the generator type now lives in
    models.base, which imports no other model module)."""
    sources = {name: source_path(name).read_text() for name in modules()}
    assert cycles(import_graph(sources)) == []


def test_the_cycle_checker_finds_cycles():
    """The checker itself: the former dcgan <-> generators cycle (a deferred import in a function counts), a
    three-module cycle, and an acyclic chain."""
    old = {"models.dcgan": "from .generators import Generator\n",
           "models.generators": "def load():\n    from .dcgan import load_dcgan_faces\n", "models.base": ""}
    assert cycles(import_graph(old)) == [["models.dcgan", "models.generators"]]
    ring = {"a": "from . import b\n", "b": "from .c import x\n", "c": "from geom.a import y\n"}
    assert cycles(import_graph(ring)) == [["a", "b", "c"]]
    chain = {"a": "from . import b\n", "b": "from .c import x\n", "c": ""}
    assert cycles(import_graph(chain)) == []


# ------------------------------------------------------------------------------------ notebooks orchestrate
NOTEBOOK_MAX_FUNCTION_LINES = 15  # a notebook's helper: a few calls into geom/ and their bookkeeping


def notebook_definitions(source: str):
    """(kind, name, lines, first line) of every class and function that a notebook's source defines, at any depth
    (a function defined inside a loop or another function counts too); lines from the ``def`` / ``class`` line to
    the last line of the body, docstring and comments inside included."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield kind, node.name, node.end_lineno - node.lineno + 1, node.lineno


def notebook_problems(name: str, source: str) -> list[str]:
    """What in notebook ``name`` (source text ``source``) is more than orchestration: classes, long functions."""
    out = []
    for kind, what, n, line in notebook_definitions(source):
        if kind == "class":
            out.append(f"notebooks/{name}.py defines class {what} (line {line}, {n} lines): a notebook only "
                       "orchestrates; move it into geom/ (CONTRIBUTING.md, Architecture) and test it there")
        elif n > NOTEBOOK_MAX_FUNCTION_LINES:
            out.append(f"notebooks/{name}.py defines function {what} (line {line}), {n} lines > "
                       f"{NOTEBOOK_MAX_FUNCTION_LINES}: move its arithmetic into geom/ (tested against a reference) "
                       "and keep only the calls in the notebook")
    return out


@pytest.mark.parametrize("name", notebook_names())
def test_notebooks_define_no_class_and_no_long_function(name):
    assert notebook_problems(name, (paths.NOTEBOOKS / f"{name}.py").read_text()) == []


def test_the_notebook_checker_finds_classes_and_long_functions():
    body = lambda n, indent="    ": "".join(f"{indent}x{i} = {i}\n" for i in range(n))  # noqa: E731
    assert notebook_problems("nb", "def f():\n" + body(14)) == []  # 15 lines: allowed
    assert notebook_problems("nb", "def f():\n" + body(15)) == [
        "notebooks/nb.py defines function f (line 1), 16 lines > 15: move its arithmetic into geom/ (tested "
        "against a reference) and keep only the calls in the notebook"]
    assert "defines class C (line 2, 2 lines)" in " ".join(notebook_problems("nb", "x = 1\nclass C:\n    pass\n"))
    nested = "for i in range(2):\n    def g():\n" + body(15, "        ")  # a function inside a loop
    assert "function g (line 2), 16 lines" in " ".join(notebook_problems("nb", nested))


def test_progress_defaults_to_true_everywhere():
    """One spelling per idea (issue 25): every public function of geom with a ``progress`` argument shows its
    tqdm bar by default (long loops show progress); an inner loop passes ``progress=False`` explicitly."""
    wrong = []
    for name in modules():
        tree = ast.parse(source_path(name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                a = node.args
                pos = [x.arg for x in a.args][len(a.args) - len(a.defaults):]
                pairs = list(zip(pos, a.defaults)) + [(x.arg, d) for x, d in zip(a.kwonlyargs, a.kw_defaults)
                                                       if d is not None]
                for arg, default in pairs:
                    if arg == "progress" and not (isinstance(default, ast.Constant) and default.value is True):
                        wrong.append(f"geom.{name}.{node.name}(progress={ast.unparse(default)})")
    assert not wrong, "progress must default to True: " + ", ".join(wrong)


# ------------------------------------------------------------------------------------ no long unit in geom/
FUNCTION_MAX_LINES = 80  # code lines of one function of geom/, its docstring left out (issue 25: long units)
LONG_FUNCTIONS: dict[str, str] = {  # "module.function": why it may be longer, for now (none left)
}


def function_lengths(source: str):
    """(name, code lines, first line) of every function in ``source``, at any depth (methods and nested functions
    too): lines from the ``def`` line to the last line of the body, less the docstring's lines."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                n -= first.end_lineno - first.lineno + 1
            yield node.name, n, node.lineno


def long_functions(name: str, source: str, limit: int = FUNCTION_MAX_LINES) -> list[str]:
    return [f"geom/{name.replace('.', '/')}: {fn} (line {line}) has {n} code lines > {limit}: split it into "
            "named steps (behaviour unchanged, bit for bit)"
            for fn, n, line in function_lengths(source) if n > limit and f"{name}.{fn}" not in LONG_FUNCTIONS]


def test_no_function_in_geom_is_longer_than_the_limit():
    problems = [p for name in modules() for p in long_functions(name, source_path(name).read_text())]
    assert not problems, "\n".join(problems)
    for exempt in LONG_FUNCTIONS:  # an exemption names a function that exists and is still long
        mod, fn = exempt.rsplit(".", 1)
        lengths = {f: n for f, n, _ in function_lengths(source_path(mod).read_text())}
        assert lengths.get(fn, 0) > FUNCTION_MAX_LINES, f"{exempt} is short now: drop it from LONG_FUNCTIONS"


def test_the_function_length_checker_counts_code_lines():
    body = lambda n: "".join(f"    x{i} = {i}\n" for i in range(n))  # noqa: E731
    doc = '    """A docstring\n    of three\n    lines."""\n'
    assert long_functions("m", "def f():\n" + doc + body(79)) == []  # 80 code lines, the docstring left out
    assert long_functions("m", "def f():\n" + body(80)) == [
        "geom/m: f (line 1) has 81 code lines > 80: split it into named steps (behaviour unchanged, bit for bit)"]
    nested = "class C:\n    def g(self):\n" + "".join(f"        y{i} = {i}\n" for i in range(80))
    assert "g (line 2) has 81 code lines" in " ".join(long_functions("m", nested))
    LONG_FUNCTIONS["m.exempt"] = "a test of the exemption"
    try:
        assert long_functions("m", "def exempt():\n" + body(200)) == []  # exempt by name
    finally:
        del LONG_FUNCTIONS["m.exempt"]


# ------------------------------------------------------------------------------------ the docs follow the tree
def _block_after(text: str, heading: str) -> str:
    """The first fenced block after ``heading`` in a markdown text."""
    rest = text[text.index(heading):]
    return rest.split("```", 2)[1]


def architecture_layers(text: str) -> dict[str, str]:
    """``layer -> its text`` in CONTRIBUTING.md's Architecture block (a line starting with a layer's name opens
    it; the lines below continue it)."""
    out: dict[str, str] = {}
    current = None
    for line in _block_after(text, "## Architecture").splitlines():
        word = line.split()[0] if line.split() else ""
        if word in LAYERS or word == "notebooks":
            current = word
        if current:
            out[current] = out.get(current, "") + " " + line
    return out


def test_contributing_architecture_and_readme_layout_follow_the_tree():
    """Every top-level module and package of geom/ is named in its own layer of CONTRIBUTING.md's Architecture
    block and in the README's Layout block; neither names a module that is not there."""
    import re

    tops = sorted({m.split(".")[0] for m in modules()})
    layers = architecture_layers((paths.ROOT / "CONTRIBUTING.md").read_text())
    layout = _block_after((paths.ROOT / "README.md").read_text(), "## Layout")
    missing = [f"{t} (layer {LAYER[t]}) not in CONTRIBUTING's {LAYER[t]} layer" for t in tops
               if not re.search(rf"(?<![\w.]){t}\b", layers.get(LAYER[t], ""))]
    missing += [f"{t} not in the README layout" for t in tops if not re.search(rf"^\s+{t}(\.py|/)\s", layout, re.M)]
    assert not missing, missing
    listed = set(re.findall(r"^  (\w+)(?:\.py|/)\s", layout, re.M))
    assert listed <= set(tops), f"the README layout names modules geom/ does not have: {sorted(listed - set(tops))}"
