"""The house of ``ppmodels.infer``, pinned: which subpackage may import which, no private name
crossing a module boundary, no import cycle, and the sizes a reader can take in whole.

Imports are read from the source (``ast``), function-level ones included, relative ones
resolved; nothing is imported to find them.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

import ppmodels

ROOT = Path(ppmodels.__file__).parent
INFER = ROOT / "infer"
TESTS = Path(__file__).parent

#: each part of ppmodels.infer and the parts it may import (the layers run one way, downwards)
ALLOWED = {
    "errors": set(),
    "initialization": set(),
    "threads": set(),
    "graphs": set(),
    "program": {"initialization"},
    "density": {"graphs", "program", "errors", "initialization"},
    "training": {"graphs", "program", "errors", "initialization", "threads"},
    "vi": {"training", "program", "errors", "initialization"},
    "sampling": {"density", "graphs", "program", "errors", "initialization"},
    "diagnostics": {"training", "program", "errors"},
    "comparison": {
        "training",
        "vi",
        "sampling",
        "density",
        "diagnostics",
        "graphs",
        "program",
        "errors",
        "initialization",
        "threads",
    },
}
#: a module, a class and a function a reader takes in whole (lines; a function's code lines
#: outside its docstring); modules in one folder
LIMITS = {"module": 500, "class": 250, "function": 80, "folder": 15}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """``(line, imported module, names)`` for every import in ``path``, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if _is_module(f"{module}.{n}")]  # ``from . import checkpoints``
            for n in submodules:
                yield node.lineno, f"{module}.{n}", []
            if len(submodules) < len(names):
                yield node.lineno, module, [n for n in names if n not in submodules]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _part(module: str):
    """The part of ppmodels.infer a module belongs to (``None`` outside it)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["ppmodels", "infer"] else None


def _infer_modules():
    return sorted(INFER.rglob("*.py"))


def test_every_part_of_infer_imports_only_the_parts_below_it():
    assert {p.name for p in INFER.iterdir() if p.suffix == ".py" or p.is_dir()} - {"__init__.py", "__pycache__"} == {
        f"{name}.py" if name in ("errors", "initialization", "threads") else name for name in ALLOWED
    }, "a new part of ppmodels.infer needs its row in ALLOWED"
    wrong = []
    for path in _infer_modules():
        if path.parent == INFER and path.name == "__init__.py":
            continue  # the package's face re-exports every part
        mine = _part(_module_name(path))
        for line, module, _ in _imports(path):
            theirs = _part(module)
            if theirs is not None and theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {module} ({theirs})")
            if module == "ppmodels.infer" and mine is not None:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the package's face from inside it")
    assert not wrong, "\n".join(wrong)


def test_the_graph_machinery_imports_nothing_else_from_infer_and_training_no_mcmc_or_comparison():
    # the two rules the table above must keep, stated on their own
    assert ALLOWED["graphs"] == set()
    assert not ALLOWED["training"] & {"sampling", "comparison", "density", "vi", "diagnostics"}


@pytest.mark.parametrize("where", ["ppmodels", "tests"])
def test_no_private_name_of_infer_is_imported_across_a_module_boundary(where):
    paths = sorted((ROOT if where == "ppmodels" else TESTS).rglob("*.py"))
    crossing = []
    for path in paths:
        for line, module, names in _imports(path):
            if not module.startswith("ppmodels.infer"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") for part in module.split(".")):
                crossing.append(f"{path}:{line} from {module} import {', '.join(private) or '...'}")
    assert not crossing, "\n".join(crossing)


def test_no_private_name_is_imported_from_another_module_of_ppmodels():
    """Outside infer too, a name with a leading underscore stays in its module; a private
    module (the facade's ``_layers``, the command's ``_threads``) may be imported whole or its
    public names taken."""
    crossing = []
    for path in sorted(ROOT.rglob("*.py")):
        for line, module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.startswith("ppmodels") and private:
                crossing.append(f"{path.relative_to(ROOT)}:{line} from {module} import {', '.join(private)}")
    assert not crossing, "\n".join(crossing)


def test_no_two_modules_of_infer_import_each_other_in_a_loop():
    """A package's name stands for its ``__init__`` (its face), whose imports are its own
    modules; a loop through a face is a loop too."""
    edges = {}
    for path in _infer_modules():
        name = _module_name(path)
        edges[name] = {m for _, m, _ in _imports(path) if m.startswith("ppmodels.infer.") and m != name}
    state = {}  # module -> "open" while its imports are walked, "done" after

    def visit(node, trail):
        if state.get(node) == "open":
            raise AssertionError("import loop: " + " -> ".join([*trail[trail.index(node) :], node]))
        if state.get(node) == "done" or node not in edges:
            return
        state[node] = "open"
        for nxt in sorted(edges[node]):
            visit(nxt, [*trail, node])
        state[node] = "done"

    for start in sorted(edges):
        visit(start, [])


def _code_lines(node, lines) -> int:
    docstrings = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return sum(
        1
        for i in range(node.lineno, node.end_lineno + 1)
        if i not in docstrings and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def test_modules_classes_and_functions_of_infer_are_sizes_a_reader_takes_in_whole():
    over = []
    for path in _infer_modules():
        lines = path.read_text().splitlines()
        if len(lines) > LIMITS["module"]:
            over.append(f"module {path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > LIMITS["class"]:
                over.append(f"class {path.relative_to(ROOT)}:{node.name}: {node.end_lineno - node.lineno + 1} lines")
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and _code_lines(node, lines) > LIMITS["function"]
            ):
                over.append(f"function {path.relative_to(ROOT)}:{node.name}: {_code_lines(node, lines)} code lines")
    for folder in {p.parent for p in _infer_modules()}:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > LIMITS["folder"]:
            over.append(f"folder {folder.relative_to(ROOT)}: {len(modules)} modules")
    assert not over, "\n".join(over)


def test_every_module_of_infer_says_its_job_in_a_docstring():
    missing = [str(p.relative_to(ROOT)) for p in _infer_modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing
