"""The package's import structure, read from the source with ``ast`` (nothing is imported).

Rules, checked on every module under ``src/gaussrender``:

* no import cycle between modules. Every import counts: at module level, inside functions
  (a lazy import only postpones a cycle to the first call, and hides it from a reader) and
  under ``if TYPE_CHECKING:``. An import of ``a.b.c`` also depends on the ``__init__`` of
  every package on the way (``a.b``), since Python runs it first; the root package
  ``gaussrender`` is left out of these implicit steps (its ``__init__`` gathers the public API
  from everything, so every module would otherwise sit in a cycle with it), and so is a
  package the importing module itself belongs to (Python is already running that
  ``__init__``). An explicit ``from . import name`` of a package's own ``__init__`` does count:
  that is how ``render._torch`` once imported ``RenderResult`` from ``render``, whose
  ``__init__`` imported ``_torch`` back;
* no cross-package private import: ``P._m`` (a private module) or ``_name`` (a private name)
  of package ``P`` is imported only by modules inside ``P``;
* the data readers (``gaussrender.data``) do not reach the metrics (``gaussrender.metrics``),
  directly or through other modules: what both need lives in ``gaussrender.geometry``;
* the losses (``gaussrender.losses``) reach neither training, commands, integrations, models,
  data nor metrics: a user's training code imports the loss without any of them;
* the package root reads like a table of contents: at most :data:`MAX_ROOT_MODULES` modules
  loose at the root (the rest in folders that name the architecture), no module over
  :data:`MAX_MODULE_LINES` lines, no function over :data:`MAX_FUNCTION_LINES` lines
  (docstring included).

The walker is tested on small synthetic packages too, so that each rule is seen to fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import gaussrender

SRC = Path(gaussrender.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (a package means its __init__)
    names: tuple[str, ...]  # names taken from it (empty for ``import x``)
    line: int


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def collect_imports(root: Path, package: str) -> tuple[set[str], list[Import]]:
    """All modules of the package rooted at ``root`` and every import of one of them by another."""
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(f, root, package): f for f in files}
    imports: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name.split(".") if _is_package(path) else name.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        imports.append(Import(name, alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if not (source == package or source.startswith(package + ".")):
                    continue
                names = tuple(a.name for a in node.names)
                # ``from P import m`` with m a submodule imports that module; other names come
                # from P itself
                from_source = tuple(n for n in names if f"{source}.{n}" not in modules)
                for n in names:
                    if f"{source}.{n}" in modules:
                        imports.append(Import(name, f"{source}.{n}", (), node.lineno))
                if from_source:
                    imports.append(Import(name, source, from_source, node.lineno))
    return set(modules), imports


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def dependency_graph(modules: set[str], imports: list[Import], package: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target != imp.importer:
            graph[imp.importer].add(imp.target)  # what the module asked for, always
        for t in _ancestors(imp.target):  # the __init__ files Python runs on the way
            inside = imp.importer == t or imp.importer.startswith(t + ".")
            if t in modules and t != package and not inside:
                graph[imp.importer].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
    return out


def _owner(module: str, modules: set[str], is_package: bool) -> str:
    return module if is_package else module.rsplit(".", 1)[0]


def private_imports(modules: set[str], imports: list[Import]) -> list[str]:
    """Imports of a private module or name by a module outside the package that owns it."""
    packages = {m for m in modules if any(o.startswith(m + ".") for o in modules)}
    bad = []
    for imp in imports:
        parts = imp.target.split(".")
        owners = [".".join(parts[:i]) for i in range(1, len(parts)) if parts[i].startswith("_")]
        if any(n.startswith("_") and not n.startswith("__") for n in imp.names):
            owners.append(_owner(imp.target, modules, imp.target in packages))
        for owner in owners:
            if not (imp.importer == owner or imp.importer.startswith(owner + ".")):
                bad.append(f"{imp.importer}:{imp.line} imports {imp.target} {list(imp.names)} (private to {owner})")
    return bad


def reaches(graph: dict[str, set[str]], start_prefix: str, forbidden_prefix: str) -> list[str]:
    """Paths ``a -> ... -> b`` from a module under ``start_prefix`` to one under ``forbidden_prefix``."""

    def under(m: str, prefix: str) -> bool:
        return m == prefix or m.startswith(prefix + ".")

    found = []
    for start in sorted(m for m in graph if under(m, start_prefix)):
        parent = {start: ""}
        queue = [start]
        while queue:
            v = queue.pop(0)
            if under(v, forbidden_prefix):
                path = [v]
                while parent[path[-1]]:
                    path.append(parent[path[-1]])
                found.append(" -> ".join(reversed(path)))
                break
            for w in sorted(graph[v]):
                if w not in parent:
                    parent[w] = v
                    queue.append(w)
    return found


# ---- the package --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package():
    modules, imports = collect_imports(SRC, "gaussrender")
    return modules, imports, dependency_graph(modules, imports, "gaussrender")


def test_walker_sees_the_package(package):
    modules, imports, graph = package
    # a sanity floor, so that a walker that finds nothing cannot pass the rules below
    assert {"gaussrender.geometry.raycast", "gaussrender.metrics.rayiou", "gaussrender.data.nuscenes"} <= modules
    assert "gaussrender.geometry.raycast" in graph["gaussrender.metrics.rayiou"]
    assert len(imports) > 200


def test_no_import_cycles(package):
    _, _, graph = package
    assert find_cycles(graph) == []


def test_no_cross_package_private_imports(package):
    modules, imports, _ = package
    assert private_imports(modules, imports) == []


def test_data_does_not_reach_metrics(package):
    _, _, graph = package
    assert reaches(graph, "gaussrender.data", "gaussrender.metrics") == []


@pytest.mark.parametrize("forbidden", ["train", "commands", "integrations", "models", "data", "metrics"])
def test_losses_stand_alone(package, forbidden):
    _, _, graph = package
    assert reaches(graph, "gaussrender.losses", f"gaussrender.{forbidden}") == []


# ---- the layout ---------------------------------------------------------------------------

MAX_ROOT_MODULES = 6
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 120


def root_modules(root: Path) -> list[str]:
    """The ``.py`` files directly in the package root (``__init__`` included)."""
    return sorted(p.name for p in root.glob("*.py"))


def long_modules(root: Path, limit: int) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append(f"{path.relative_to(root)}: {lines} lines")
    return out


def long_functions(root: Path, limit: int) -> list[str]:
    """Functions and methods (nested ones too) longer than ``limit`` lines, decorators aside."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines")
    return out


def test_package_root_is_a_table_of_contents():
    loose = root_modules(SRC)
    assert len(loose) <= MAX_ROOT_MODULES, loose
    # the losses live in one package, not loose at the root
    assert (SRC / "losses" / "render" / "loss.py").is_file()
    assert not [name for name in loose if name.startswith("loss")]


def test_no_module_or_function_is_too_long():
    assert long_modules(SRC, MAX_MODULE_LINES) == []
    assert long_functions(SRC, MAX_FUNCTION_LINES) == []


# ---- the walker on synthetic packages: each rule can fail --------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def _analyse(tmp_path: Path, files: dict[str, str]):
    root = _write(tmp_path, {"__init__.py": "", **files})
    modules, imports = collect_imports(root, "pkg")
    return modules, imports, dependency_graph(modules, imports, "pkg")


def test_walker_finds_a_cycle_through_a_lazy_import(tmp_path):
    _, _, graph = _analyse(
        tmp_path,
        {
            "a/__init__.py": "from .x import f\n",
            "a/x.py": "def f():\n    from ..b.y import g\n    return g()\n",
            "b/__init__.py": "",
            "b/y.py": "from ..a import f\n\ndef g():\n    return 1\n",
        },
    )
    assert find_cycles(graph) == [["pkg.a", "pkg.a.x", "pkg.b.y"]]


def test_walker_finds_a_cycle_through_a_package_init(tmp_path):
    # m imports r.res only, but Python runs r/__init__ first, which imports m back
    _, _, graph = _analyse(
        tmp_path,
        {
            "r/__init__.py": "from .res import R\nfrom ..m import use\n",
            "r/res.py": "R = 1\n",
            "m.py": "from .r.res import R\n\ndef use():\n    return R\n",
        },
    )
    assert find_cycles(graph) == [["pkg.m", "pkg.r"]]


def test_walker_finds_a_backend_importing_its_package_init(tmp_path):
    # the old render <-> render._torch cycle: the backend took RenderResult from the package
    # __init__, which imports the backend (lazily, inside render())
    _, _, graph = _analyse(
        tmp_path,
        {
            "r/__init__.py": "class R:\n    pass\n\ndef render():\n    from ._torch import run\n    return run()\n",
            "r/_torch.py": "from . import R\n\ndef run():\n    return R()\n",
        },
    )
    assert find_cycles(graph) == [["pkg.r", "pkg.r._torch"]]


def test_walker_accepts_a_package_importing_its_own_modules(tmp_path):
    _, _, graph = _analyse(
        tmp_path,
        {
            "r/__init__.py": "from .api import render\nfrom .res import R\n",
            "r/api.py": "from .res import R\n\ndef render():\n    from ._backend import run\n    return run()\n",
            "r/_backend.py": "from .res import R\n\ndef run():\n    return R\n",
            "r/res.py": "R = 1\n",
        },
    )
    assert find_cycles(graph) == []


def test_walker_finds_cross_package_private_imports(tmp_path):
    modules, imports, _ = _analyse(
        tmp_path,
        {
            "_util.py": "X = 1\n",
            "a/__init__.py": "",
            "a/_impl.py": "Y = 1\n",
            "a/pub.py": "_Z = 1\nW = 2\n",
            "a/ok.py": "from ._impl import Y\nfrom .pub import _Z\nfrom .._util import X\n",
            "b/__init__.py": "",
            "b/bad.py": "from ..a._impl import Y\nfrom ..a.pub import _Z, W\nfrom pkg.a import _impl\n",
        },
    )
    bad = private_imports(modules, imports)
    assert [b.split(" ")[0] for b in bad] == ["pkg.b.bad:1", "pkg.b.bad:2", "pkg.b.bad:3"]
    assert all("(private to pkg.a)" in b for b in bad)


def test_layout_rules_fail_on_a_crowded_root_and_long_code(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(130))
    root = _write(
        tmp_path,
        {
            **{f"m{i}.py": "" for i in range(7)},
            "__init__.py": "",
            "sub/long.py": f"def f():\n{body}\n",
        },
    )
    assert len(root_modules(root)) == 8
    assert long_modules(root, 100) == ["sub/long.py: 131 lines"]
    assert long_functions(root, 120) == ["sub/long.py:1 f: 131 lines"]
    assert long_functions(root, 131) == []


def test_walker_finds_data_reaching_metrics(tmp_path):
    _, _, graph = _analyse(
        tmp_path,
        {
            "data/__init__.py": "",
            "data/reader.py": "def origins():\n    from ..geo import ray_origins\n    return ray_origins()\n",
            "geo.py": "from .metrics.rays import ray_origins\n",
            "metrics/__init__.py": "",
            "metrics/rays.py": "def ray_origins():\n    return 0\n",
        },
    )
    assert reaches(graph, "pkg.data", "pkg.metrics") == ["pkg.data.reader -> pkg.geo -> pkg.metrics"]
