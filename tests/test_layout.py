"""The package's layout as a contract: rooms by concern, imports only downward, no cycle, no module too long,
and the code that reads a user's pictures free of torch and Lightning."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "lenet_cli"

# Each room's level: a module may import from its own room and from rooms of a lower level only.
LEVELS = {
    "errors": 0, "atomic": 0, "_lightning": 0, "__init__": 0,
    "images": 1,
    "reading": 2, "training": 2,
    "data": 3, "checkpoints": 3,  # data: predict reads the user's pictures through reading/
    "runs": 4,
    "outputs": 5,
    "export": 6, "serving": 6,
    "cli": 7, "__main__": 8, "curves": 8, "report": 8, "model": 8,
}  # fmt: skip
TORCH_FREE = ("images", "reading")  # rooms that a reader without torch installs imports
MAX_LINES = 400


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Every ``lenet_cli`` module and every top-level third-party package that ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module.startswith("lenet_cli"):
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
    known = modules()
    return {name for name in found if not name.startswith("lenet_cli") or name in known}


def test_every_room_has_a_level_and_there_are_at_least_five_subpackages() -> None:
    rooms = {room(module) for module in modules()}
    assert rooms <= LEVELS.keys(), f"rooms without a level: {rooms - LEVELS.keys()}"
    subpackages = [path.parent.name for path in PACKAGE.glob("*/__init__.py")]
    assert len(subpackages) >= 5, subpackages


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_run_downward(module: str) -> None:
    level = LEVELS[room(module)]
    upward = [
        name
        for name in imports(modules()[module])
        if name.startswith("lenet_cli.") and room(name) != room(module) and LEVELS[room(name)] > level
    ]
    assert not upward, f"{module} (level {level}) imports from a higher room: {upward}"


def test_no_import_cycle() -> None:
    graph = {module: {name for name in imports(path) if name in modules()} for module, path in modules().items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " → ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for name in sorted(graph[module]):
            visit(name)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_stay_short(module: str) -> None:
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concern"


@pytest.mark.parametrize("module", sorted(name for name in modules() if room(name) in TORCH_FREE))
def test_reading_code_imports_neither_torch_nor_lightning(module: str) -> None:
    heavy = {name for name in imports(modules()[module]) if name.split(".")[0] in ("torch", "lightning", "torchvision")}
    lenet = {name for name in imports(modules()[module]) if name.startswith("lenet_cli.")}
    assert not heavy, f"{module} imports {heavy}"
    assert all(room(name) in (*TORCH_FREE, "errors", "atomic", "__init__") for name in lenet), lenet
