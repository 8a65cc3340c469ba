"""The package's layers: imports point one way, counting imports inside functions too.

    cochlea  <-  spiketrum (encoder core)  <-  datasets
    snn (spike tensors; torch and numba only)
    spiketrum.app (the commands) may import everything; nothing imports it.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cochlea", "spiketrum", "snn", "datasets")
APP = "spiketrum.app"

#: part -> the parts it may import (its own modules are always allowed).
ALLOWED = {
    "cochlea": set(),
    "spiketrum": {"cochlea"},
    "datasets": {"cochlea", "spiketrum"},
    "snn": set(),
    APP: {"cochlea", "spiketrum", "datasets", "snn"},
}


def part(module):
    """The layer a module belongs to."""
    return APP if module == APP or module.startswith(APP + ".") else module.split(".")[0]


def module_name(path, root):
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(source, module, is_package, known):
    """Every project module that ``source`` (of ``module``) imports, anywhere in the file: ``(line, target)``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            stem = ".".join(p for p in ((base if node.level else ""), node.module or "") if p)
            # "from pkg import name": name may be a submodule (an edge to it) or an attribute (an edge to pkg)
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "import pkg.mod.attr" or an outside package: trim to a known module
                t = t.rpartition(".")[0]
            if t and t != module:
                found.append((node.lineno, t))
    return found


def import_graph(root=ROOT):
    """``{module: [(line, imported module), ...]}`` over the project's packages."""
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    return {m: imports_of(p.read_text(), m, p.name == "__init__.py", files) for m, p in files.items()}


def forbidden_arrows(graph):
    return [f"{m}:{line} imports {t}" for m, edges in graph.items() for line, t in edges
            if part(t) != part(m) and part(t) not in ALLOWED[part(m)]]


def cycles(graph):
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for _, w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_forbidden_arrow():
    assert forbidden_arrows(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_catch_a_forbidden_import_and_a_cycle(tmp_path):
    """The checks themselves can fail: a copy of the tree with snn importing spiketrum, and a two-module cycle."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "snn" / "models.py").write_text("def f():\n    from spiketrum import encoder\n")
    (tmp_path / "spiketrum" / "encoder.py").write_text("from . import metrics\n")
    (tmp_path / "spiketrum" / "metrics.py").write_text("def g():\n    from .encoder import decode\n")
    graph = import_graph(tmp_path)
    assert forbidden_arrows(graph) == ["snn.models:2 imports spiketrum.encoder"]
    assert cycles(graph) == [["spiketrum.encoder", "spiketrum.metrics"]]


def test_import_spiketrum_loads_no_application_torch_or_snn():
    code = ("import sys, spiketrum, cochlea; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'snn') or m.startswith('spiketrum.app')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["snn", "datasets"])
def test_libraries_import_without_the_application_layer(package):
    code = f"import sys, {package}; print(sorted(m for m in sys.modules if m.startswith('spiketrum.app')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"
