"""Check that interpretgan's modules import only downward.

    python scripts/check_imports.py [SRC_DIR]      (default: src next to this script)

The package's parts, from the bottom up, are listed in ``LAYERS``; a module may import
modules of its own part or of a part below it, never one above. Every import counts,
also one inside a function (such an import may only name a module outside the package: an
optional heavy dependency). The old top-level module names kept for compatibility
(``SHIMS``) only re-export: they may import anything of the package, and nothing in the
package may import them. Prints one line per problem; exit status 1 if there is any.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "interpretgan"
# Parts of the package from the bottom up: (part, what it holds). A part is a top-level
# module or subpackage of interpretgan.
LAYERS = [
    ("registry", "name → factory registries"),
    ("settings", "config machinery: merge, rules, validation, bounds"),
    ("paper", "the paper's reference numbers"),
    ("runtime", "run folders and checkpoints, devices, precision, ranks, progress"),
    ("data", "datasets: sources, folders, CelebA, transforms"),
    ("models", "the classifier zoo, normalisation, loading a user's model"),
    ("robust", "attacks, training methods, evaluation, the pooling study"),
    ("interpret", "layers, G/C/D networks, the fit, explanations, explanation metrics"),
    ("diagnosis", "D*, Acc_i/Vul_i, max-pool index change, misclassification"),
    ("report", "HTML and figures from saved artifacts"),
    ("run", "the main job: stages and their cache, results assembly"),
    ("cli", "the command line"),
    ("__main__", "python -m interpretgan"),
]
# The flat modules of 0.1, kept as re-exports for one release.
SHIMS = {"_moved", "attacks", "config", "devices", "distributed", "evaluate", "explain", "fitting",
         "gan", "layers", "loading", "metrics", "pipeline", "precision", "progress", "runs", "study",
         "training"}


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for each import of ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node, in_func: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                for a in child.names:  # ``from . import x``: x may be a module
                    out.append((f"{base}.{a.name}" if child.module is None else base, child.lineno, in_func))
            visit(child, inner)

    visit(tree, False)
    return out


def resolve(target: str, modules: set[str]) -> str | None:
    """The package module ``target`` names (the longest prefix that is one), or None."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in modules:
            return cand
    return None


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def check(src: Path) -> list[str]:
    files = {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}
    modules = set(files)
    order = {name: i for i, (name, _) in enumerate(LAYERS)}
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        rel = path.relative_to(src)
        for target, line, in_func in imports(path, mod):
            dep = resolve(target, modules)
            if dep is None or dep == PACKAGE:
                continue
            if part(mod) in SHIMS:  # a shim: a leaf that re-exports
                continue
            if part(dep) in SHIMS and mod != PACKAGE:
                problems.append(f"{rel}:{line}: imports the compatibility shim {dep}")
            if in_func:
                problems.append(f"{rel}:{line}: imports {dep} inside a function")
            if mod == PACKAGE:
                continue
            if dep != mod and not mod.startswith(dep + "."):  # a package's own __init__ is no arrow
                graph[mod].add(dep)
            if part(mod) not in order:
                problems.append(f"{rel}: part {part(mod)!r} is in no layer of LAYERS")
                continue
            if part(dep) in order and order[part(dep)] > order[part(mod)]:
                problems.append(f"{rel}:{line}: {mod} ({part(mod)}) imports {dep} ({part(dep)}), "
                                f"a part above it")
    problems += [f"import cycle: {' → '.join(c + [c[0]])}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                comps.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_cycle_in(graph, set(c)) for c in comps]


def _cycle_in(graph, comp: set[str]) -> list[str]:
    start = min(comp)
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in comp)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]):]
        path.append(nxt[0])
        seen.add(nxt[0])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
