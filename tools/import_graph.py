"""The import graph of ``course_lib``, floor by floor: check it, print it, draw it.

    python tools/import_graph.py            # arrows between packages, and any that break a rule
    python tools/import_graph.py --png F    # draw the package graph, floors bottom up, into F

Every ``import`` and ``from ... import`` of a ``course_lib`` module counts, at module level or
inside a function (an import inside a function is an arrow all the same, only a later one).
The floors are :data:`FLOORS` (``tests/test_structure.py`` explains them): a module may
import its own floor and those below, never above, and packages import each other in no
cycle.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

#: Floor of each top-level part of the package (a package under ``course_lib/`` or a module).
FLOORS = {
    "config": 0, "_tf_logs": 0, "__init__": 0,
    "ops": 1,
    "layers": 2, "losses": 2, "metrics": 2,
    "data": 3,
    "models": 4,
    "shipped": 5,
    "training": 6,
    "experiments": 7, "recorded": 7, "viz": 7,
    "session": 8, "train": 8, "predict": 8, "exercises": 8,
}


def part(module: str) -> str:
    """``course_lib.ops.boxes`` -> ``ops``; ``course_lib`` itself -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def floor(module: str) -> int | None:
    """The floor of a ``course_lib`` module (``None``: a part :data:`FLOORS` does not name)."""
    return FLOORS.get(part(module))


def _module_name(path: Path, root: Path) -> str:
    pieces = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(pieces[:-1] if pieces[-1] == "__init__" else pieces)


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: {course_lib modules it imports}}`` for every module below ``root`` (the
    ``course_lib`` folder). ``from course_lib.x import y`` points at ``course_lib.x.y`` when
    that is a module, else at ``course_lib.x``."""
    root = Path(root)
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(root.name):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith(root.name)}
        graph[name] = {t for t in targets if t != name and t in modules}
    return graph


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a module on a higher floor, sorted."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if floor(a) is not None and floor(b) is not None and floor(b) > floor(a))


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between parts (``ops``, ``layers``, ...), arrows within a part left out."""
    parts: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        parts[part(a)]
        for b in targets:
            if part(a) != part(b):
                parts[part(a)].add(part(b))
    return dict(parts)


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between parts: the strongly connected groups of more than one part (Tarjan)."""
    parts = package_graph(graph)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(parts.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(parts):
        if v not in index:
            visit(v)
    return groups


def draw(graph: dict[str, set[str]], out: Path) -> None:
    """The parts as boxes on their floors (bottom up), an arrow per import between parts:
    grey downward, red upward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = package_graph(graph)
    by_floor: dict[int, list[str]] = defaultdict(list)
    for p in sorted(parts, key=lambda p: (FLOORS.get(p, 99), p)):
        by_floor[FLOORS.get(p, 99)].append(p)
    where = {}
    for f, names in by_floor.items():
        for k, name in enumerate(names):
            where[name] = ((k + 1) / (len(names) + 1) * 10, f)
    fig, ax = plt.subplots(figsize=(11, 8))
    for a, targets in parts.items():
        for b in targets:
            (x0, y0), (x1, y1) = where[a], where[b]
            up = FLOORS.get(b, 99) > FLOORS.get(a, 99)
            ax.annotate("", (x1, y1 + 0.18), (x0, y0 - 0.18),
                        arrowprops=dict(arrowstyle="->", color="red" if up else "0.6",
                                        lw=2 if up else 0.8, shrinkA=6, shrinkB=6))
    for name, (x, y) in where.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round", fc="white", ec="black"))
    for f in by_floor:
        ax.text(-0.3, f, f"floor {f}", ha="right", va="center", color="0.4")
    ax.set_xlim(-1.5, 10.5)
    ax.set_ylim(-0.7, max(by_floor) + 0.7)
    ax.axis("off")
    ax.set_title("course_lib: imports between parts (grey: downward; red: upward, none allowed)")
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--png", type=Path, default=None, help="draw the package graph into this file")
    args = p.parse_args(argv)
    root = Path(__file__).resolve().parent.parent / "course_lib"
    graph = import_graph(root)
    for name, targets in sorted(package_graph(graph).items(),
                                key=lambda kv: (FLOORS.get(kv[0], 99), kv[0])):
        print(f"{FLOORS.get(name, '?')} {name:<12} -> {', '.join(sorted(targets)) or '-'}")
    upward, cycles = upward_arrows(graph), package_cycles(graph)
    for a, b in upward:
        print(f"UPWARD: {a} imports {b}")
    for group in cycles:
        print(f"CYCLE: {' <-> '.join(group)}")
    if args.png:
        draw(graph, args.png)
        print(f"drawn: {args.png}")
    return 1 if upward or cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
