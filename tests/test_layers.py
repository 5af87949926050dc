"""The layering, read from the source (AST): a lower layer never imports a higher one, nothing imports
a front end, and an import inside a function says why it is there (`# lazy: <reason>`).

    utils (the base) <- archive, devmapper, links, dockerinit <- graph <- runtime <- front ends
    front ends: cli, runtime.api (`pydock serve`), runtime.testing (the pytest plugin)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent
FOLDERS = ("utils", "archive", "devmapper", "links", "dockerinit", "graph", "runtime", "cli")
FRONT_ENDS = ("pydock.cli", "pydock.runtime.api", "pydock.runtime.testing")
#: what each layer may import besides itself.
ALLOWED = {
    "pydock.utils": set(),
    "pydock.archive": {"pydock.utils"},
    "pydock.devmapper": {"pydock.utils"},
    "pydock.links": {"pydock.utils"},
    "pydock.dockerinit": {"pydock.utils"},
    "pydock.graph": {"pydock.utils", "pydock.archive", "pydock.devmapper"},
    "pydock.runtime": {"pydock.utils", "pydock.archive", "pydock.devmapper", "pydock.links", "pydock.dockerinit",
                       "pydock.graph"},
}
#: the one front end that starts another: `pydock serve`.
FRONT_END_EDGES = {("pydock.cli", "pydock.runtime.api")}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder in FOLDERS:
        for path in sorted((SRC / folder).rglob("*.py")):
            rel = path.relative_to(SRC / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((".".join(["pydock", folder, *parts]), path))
    return out


def _imports(module: str, path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported pydock module, inside a function) for every import of pydock in the file."""
    tree = ast.parse(path.read_text(), str(path))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: -node.level] if not path.name == "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "pydock" or name.startswith("pydock."):
                found.append((node.lineno, name, id(node) in inner))
    return found


def _layer(module: str) -> str:
    for front in FRONT_ENDS:
        if module == front or module.startswith(front + "."):
            return front
    return ".".join(module.split(".")[:2])


def _known(name: str, modules: set[str]) -> str | None:
    """The module `name` refers to (a from-import's name may be an attribute, not a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_source_folder_is_a_package_of_the_layering():
    assert {m.split(".")[1] for m, _ in _modules()} == set(FOLDERS)
    assert set(ALLOWED) | {f for f in FRONT_ENDS if f.count(".") == 1} == {f"pydock.{f}" for f in FOLDERS}


def test_imports_point_down_the_layers_only():
    modules = dict(_modules())
    wrong = []
    for module, path in modules.items():
        mine = _layer(module)
        for line, name, _inner in _imports(module, path):
            target = _known(name, set(modules))
            if target is None:
                wrong.append(f"{path.relative_to(SRC)}:{line}: imports {name}, which is not a pydock module")
                continue
            theirs = _layer(target)
            if theirs == mine:
                continue
            if theirs in FRONT_ENDS:
                if (mine, theirs) not in FRONT_END_EDGES:
                    wrong.append(f"{path.relative_to(SRC)}:{line}: {mine} imports the front end {target}")
                continue
            if mine in FRONT_ENDS:
                continue
            if theirs not in ALLOWED[mine]:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {mine} imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_the_base_layer_imports_nothing_of_pydock_but_itself():
    for module, path in _modules():
        if module.startswith("pydock.utils"):
            assert all(name.startswith("pydock.utils") for _, name, _ in _imports(module, path)), path


@pytest.mark.parametrize("folder", FOLDERS)
def test_imports_inside_functions_say_why(folder):
    """Only imports that keep a command fast (or are optional) live in functions, each with its reason."""
    bare = []
    for path in sorted((SRC / folder).rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and "# lazy:" not in lines[node.lineno - 1]:
                    bare.append(f"{path.relative_to(SRC)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, "function-level imports without a `# lazy: <reason>` comment:\n" + "\n".join(sorted(set(bare)))


def test_every_package_folder_is_installed():
    """A folder with an __init__.py that pyproject.toml does not list would be missing from the wheel,
    the binary and the .deb (they are built from that list)."""
    import tomllib

    listed = set(tomllib.loads((SRC / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder in FOLDERS:
        for init in (SRC / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(SRC / folder)
            found.add(".".join(["pydock", folder, *rel.parts]))
    assert found == listed
