"""The package's layers import downward only (README, Layout): the pure JAX core knows nothing
of studies, files or plots, results know nothing of the engine, and no two modules import
each other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fastk_jax"
LAYERS = [  # each may import from its own layer and the ones before it
    {"errors", "versions", "data", "io"},
    {"core"},
    {"theory"},
    {"engine", "reference"},
    {"study"},
    {"analysis"},
    {"runner"},
    {"bench", "cli", "__init__", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The fastk_jax modules ``path`` imports, at any depth of its code (lazy imports too)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # imports for type annotations only are not imports
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out.update(names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            out.update(m for m in mods if m and m.startswith("fastk_jax"))
    return out


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_goes_down_or_stays_in_its_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = top(module_name(path)) if module_name(path) != "fastk_jax" else "__init__"
        for target in imports(path):
            other = top(target)
            if other == "__version__":
                continue
            if other in LAYER and LAYER[other] > LAYER[me]:
                upward.append(f"{module_name(path)} -> {target}")
    assert not upward, upward


def test_no_two_modules_import_each_other():
    graph = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}

    def imported(a: str, b: str) -> bool:  # a imports b or something inside b
        return any(t == b or t.startswith(b + ".") for t in graph.get(a, ()))

    cycles = [(a, b) for a in graph for b in graph if a < b and imported(a, b) and imported(b, a)]
    # a package and its own modules (re-exports and the lazy import of its model) are not cycles
    cycles = [(a, b) for a, b in cycles if not (b.startswith(a + ".") or a.startswith(b + "."))]
    assert not cycles, cycles
