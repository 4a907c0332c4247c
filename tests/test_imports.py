"""The package's import graph, read from the source: no circle, and no unexplained import inside a function.

`python bench/imports.py` prints the graph these tests check.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports_tool():
    spec = importlib.util.spec_from_file_location("bench_imports", ROOT / "bench" / "imports.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


tool = _imports_tool()


def test_the_package_has_no_import_circle():
    edges, _ = tool.graph()
    assert "localpers.vault.store" in edges and "localpers.writing.train" in edges  # the graph was read
    assert tool.cycles(edges) == []


def write_package(root: Path, **modules: str) -> None:
    """A package ``pkg`` under ``root`` with the given modules' sources."""
    package = root / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(source)


def test_the_circle_check_finds_a_circle_through_a_function_local_import(tmp_path):
    write_package(tmp_path, a="from . import b\n", b="def f():\n    from .c import x  # heavy: a test\n    return x\n",
                  c="from .a import b\nx = 1\n")
    edges, every = tool.graph(tmp_path, "pkg")
    assert tool.cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert [i.line for i in every if i.local] == [2]


def test_function_local_imports_defer_a_heavy_dependency_and_say_why():
    _, every = tool.graph()
    assert any(i.local and i.target.startswith("torch") for i in every)  # local imports were found
    assert tool.local_import_problems(every) == []


def test_an_unexplained_local_import_of_the_package_is_reported(tmp_path):
    write_package(tmp_path, a="def f():\n    from . import b\n    import json\n    import torch\n", b="")
    _, every = tool.graph(tmp_path, "pkg")
    problems = tool.local_import_problems(every, "pkg")
    assert len(problems) == 3
    assert "pkg.a:2" in problems[0] and "json" in problems[1] and "torch" in problems[2]
