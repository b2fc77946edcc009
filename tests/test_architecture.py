"""The layout rules of DESIGN.md section 3, checked on the source: layers import only downwards, no circles
(imports inside functions count), no private names across modules, small modules, each third-party library
imported only by the layer that owns it."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "msclkid_middleware"
ROOT = "msclkid_middleware"

#: Layer of each top-level module or subpackage; a module may import only lower layers or its own package.
LAYERS: dict[str, int] = {
    "errors": 0,
    "config": 1,
    "redact": 1,
    "faultpoints": 1,
    "tokens": 1,
    "charts": 1,
    "capture": 2,
    "emulator": 2,
    "conversions": 3,
    "testing": 3,
    "microsoft": 4,
    "outbox": 4,
    "dispatch": 5,
    "ops": 6,
    "cli": 7,
    "middleware": 8,
    "asgi": 8,
    "django": 9,
    "flask": 9,
    "celery": 9,
    # The Django app (checks, management command, template tags) sits on the Django middleware module.
    "djangoapp": 10,
    "__init__": 11,
}

#: Third-party libraries and the only places that may import them (prefix of the module's dotted name).
OWNERS: dict[str, tuple[str, ...]] = {
    "requests": ("microsoft", "testing"),
    "psycopg": ("outbox.postgres",),
    "psycopg_pool": ("outbox.postgres",),
    "flask": ("flask",),
    "django": ("django", "djangoapp"),
    "celery": ("celery",),
    "starlette": (),
    "werkzeug": ("middleware", "emulator", "flask"),
    "click": ("cli", "emulator.server", "flask", "django"),
    "phonenumbers": ("conversions.identity",),
}

#: What the framework-free capture core may import besides the standard library and its own package.
CAPTURE_MAY_IMPORT = ("itsdangerous", f"{ROOT}.errors", f"{ROOT}.config", f"{ROOT}.capture")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name or "__init__", path


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def runtime_imports(name: str, path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(imported module, imported names) for every import that runs, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        # `if TYPE_CHECKING:` blocks never run.
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = f"{ROOT}.{name}".split(".") if is_package(path) else f"{ROOT}.{name}".split(".")[:-1]
                base = here[: len(here) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, tuple(a.name for a in node.names)


def top(name: str) -> str:
    return name.split(".")[0]


def internal(module: str) -> str | None:
    if module == ROOT:
        return "__init__"
    if module.startswith(ROOT + "."):
        return module[len(ROOT) + 1 :]
    return None


ALL = dict(modules())


def resolve(module: str, names: tuple[str, ...]) -> list[str]:
    """The package modules an import loads (`from pkg import mod` loads pkg.mod too)."""
    inner = internal(module)
    if inner is None:
        return []
    subs = [f"{inner}.{n}" if inner != "__init__" else n for n in names]
    # `from package import module` loads that module; the package's own __init__ ran first anyway.
    only_modules = bool(names) and all(sub in ALL for sub in subs)
    found = [inner] if inner in ALL and not only_modules else []
    for n in names:
        sub = f"{inner}.{n}" if inner != "__init__" else n
        if sub in ALL:
            found.append(sub)
    return found


@pytest.mark.parametrize("name", sorted(ALL), ids=str)
def test_imports_point_down(name: str) -> None:
    layer = LAYERS[top(name)]
    for module, names in runtime_imports(name, ALL[name]):
        for target in resolve(module, names):
            if top(target) == top(name) or (target == "__init__" and name == "__init__"):
                continue
            assert LAYERS[top(target)] < layer, f"{name} (layer {layer}) imports {target} ({LAYERS[top(target)]})"


@pytest.mark.parametrize("name", sorted(ALL), ids=str)
def test_no_private_name_crosses_modules(name: str) -> None:
    for module, names in runtime_imports(name, ALL[name]):
        inner = internal(module)
        if inner is None or inner == name:
            continue
        private = [n for n in (*inner.split("."), *names) if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{name} imports private {private} from {module}"


@pytest.mark.parametrize("name", sorted(ALL), ids=str)
def test_third_party_libraries_stay_in_their_layer(name: str) -> None:
    for module, _names in runtime_imports(name, ALL[name]):
        lib = module.split(".")[0]
        if lib in OWNERS:
            assert name.startswith(OWNERS[lib]), f"{name} imports {lib}; only {OWNERS[lib]} may"
        if name.startswith("capture") and internal(module) is None:
            assert lib in sys.stdlib_module_names or module.startswith(CAPTURE_MAY_IMPORT), f"{name} imports {module}"
        if name.startswith("capture") and internal(module) is not None:
            assert module.startswith(CAPTURE_MAY_IMPORT) or module == ROOT, f"{name} imports {module}"


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {n: set() for n in ALL}
    for name, path in ALL.items():
        for module, names in runtime_imports(name, path):
            graph[name].update(t for t in resolve(module, names) if t != name)
    # Importing a submodule runs its packages' __init__ first; the root's lazy table is not an import.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt == "__init__":
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("name", sorted(ALL), ids=str)
def test_modules_stay_small(name: str) -> None:
    lines = ALL[name].read_text().count("\n")
    assert lines <= 500, f"{name} has {lines} lines"


def test_few_modules_at_the_package_top() -> None:
    top_level = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top_level) <= 12, top_level
