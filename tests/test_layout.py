"""The package's layout is its architecture: subpackages import one another in one direction
only (no cycles, lazy imports inside functions included), and the small core imports none."""

from __future__ import annotations

from .test_dvc_deps import PACKAGE, SOURCE, imported_modules

PACKAGE_DIR = SOURCE / PACKAGE
# From the bottom up; each may import only the ones before it (and itself).
LAYERS = {
    "core": set(),
    "pipeline": {"core"},
    "review": {"core", "pipeline"},
    "predlog": {"core"},
    "inference": {"core", "pipeline"},
    "monitoring": {"core", "pipeline", "inference", "predlog"},
    "dashboard": {"core", "monitoring", "predlog"},
    "serving": {"core", "pipeline", "inference", "predlog", "dashboard"},
    "stages": {"core", "pipeline", "review"},
}


def unit(module: str) -> str:
    """``sentiment_pipeline.core.paths`` -> ``core``; a top-level module names itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(SOURCE).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found.append(".".join(parts))
    return found


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in modules():
        source = unit(module)
        graph.setdefault(source, set())
        graph[source] |= {unit(m) for m in imported_modules(module) if unit(m) != source}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_subpackages_import_one_another_without_a_cycle():
    graph = unit_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_each_subpackage_imports_only_the_layers_below_it():
    graph = unit_graph()
    assert set(LAYERS) <= set(graph), sorted(set(LAYERS) - set(graph))
    for layer, allowed in LAYERS.items():
        assert graph[layer] <= allowed, f"{layer} imports {sorted(graph[layer] - allowed)}"


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
