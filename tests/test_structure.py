"""The package's structure, read from its source: imports run downward only, no module calls
another's private function, and no function in ``ops``, ``layers`` or ``training`` takes more
than four arguments by position.

The floors, bottom up (a module may import its own floor and those below, never above):

    0  config, _tf_logs, the package's __init__   settings, devices, seeds
    1  ops                                        NumPy references and keras.ops twins
    2  layers, losses, metrics                    Keras layers, losses, the DSB / COCO metrics
    3  data                                       files to samples to batches
    4  models                                     Mask R-CNN, U-Net, their inference helpers
    5  shipped                                    trained models loaded by name
    6  training                                   the engine, recipes, evaluation
    7  experiments, recorded, viz                 the chapters' comparisons, recorded runs, plots
    8  session, train, predict, exercises         notebook header, command lines, exercise checks

``tools/import_graph.py`` draws the same graph (``--png``) and prints any arrow that breaks it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph",
                                                  ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_has_a_floor():
    tool = _graph_tool()
    graph = tool.import_graph(ROOT / "course_lib")
    assert not [m for m in graph if tool.floor(m) is None]


def test_imports_run_downward_only():
    """Function-level imports count too: an import inside a function is still an arrow."""
    tool = _graph_tool()
    upward = tool.upward_arrows(tool.import_graph(ROOT / "course_lib"))
    assert not upward, "\n".join(f"{a} (floor {tool.floor(a)}) imports {b} (floor "
                                 f"{tool.floor(b)})" for a, b in upward)


def test_no_cycle_between_packages():
    tool = _graph_tool()
    assert tool.package_cycles(tool.import_graph(ROOT / "course_lib")) == []


def test_the_checker_sees_an_upward_arrow_and_a_cycle(tmp_path):
    """The oracle for the checks above: a hand-made package with one arrow up and one cycle."""
    tool = _graph_tool()
    pkg = tmp_path / "course_lib"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "models").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("def f():\n    from course_lib.models import net\n")
    (pkg / "ops" / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "ops" / "boxes.py").write_text("from course_lib import config\n")
    (pkg / "models" / "net.py").write_text("from course_lib.ops import boxes\n")
    graph = tool.import_graph(pkg)
    assert graph["course_lib.config"] == {"course_lib.models.net"}
    assert tool.upward_arrows(graph) == [("course_lib.config", "course_lib.models.net")]
    cycles = tool.package_cycles(graph)
    assert cycles and set(cycles[0]) == {"config", "ops", "models"}


def _functions(package: str):
    for path in sorted((ROOT / "course_lib" / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                yield path, node


@pytest.mark.parametrize("package", ["ops", "layers", "training"])
def test_at_most_four_positional_parameters(package):
    """More than four arguments by position is a list of values nobody can read at the call
    (``rpn_targets_ops(..., 0.7, 0.3, 256, 0.5, ...)``: which is which?); the rest are
    keyword-only."""
    crowded = []
    for path, node in _functions(package):
        names = [a.arg for a in node.args.posonlyargs + node.args.args
                 if a.arg not in ("self", "cls")]
        if len(names) > 4:
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            crowded.append(f"{where} {node.name}({', '.join(names)})")
    assert not crowded, "\n".join(crowded)


def test_no_module_reaches_into_another_modules_private_names():
    reaches = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()   # names bound to course_lib modules in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        reaches.append(f"{path.relative_to(ROOT)}: imports {alias.name}")
                    modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules |= {a.asname or a.name.split(".")[0] for a in node.names
                            if a.name.startswith("course_lib")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in modules and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                               f"{node.value.id}.{node.attr}")
    # the package's own __init__ starts its log filter: that is the one it may call
    allowed = {"course_lib/__init__.py: imports _tf_logs"}
    assert [r for r in reaches if r not in allowed] == []
