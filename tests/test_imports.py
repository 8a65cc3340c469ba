"""The package's import graph: one-way inside spiketrum/, and light at the top."""
import ast
import subprocess
import sys
from pathlib import Path

import spiketrum

PACKAGE = Path(spiketrum.__file__).parent


def _imports(path):
    """The spiketrum modules a file imports anywhere, imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                found.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module and (node.module == "spiketrum" or node.module.startswith("spiketrum.")):
                found.add(node.module.split(".", 1)[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] if "." in a.name else "__init__"
                         for a in node.names if a.name.split(".")[0] == "spiketrum")
    return {m.split(".")[0] for m in found}


def test_no_import_cycle_inside_the_package():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    assert "__init__" not in set().union(*(deps for name, deps in graph.items() if name != "__init__")), \
        "a module imports the package top, which imports every encoder"
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(path + [node])}"
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        state[node] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_import_spiketrum_imports_neither_torch_nor_snn():
    code = "import sys, spiketrum; print(sorted(m for m in ('torch', 'snn', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
