"""The import graph, read from the source: no circle among workers' modules, none between packages, and the
orchestrator's planning and the challenge server's scoring free of the training stack.

Every import statement counts, those inside functions and under TYPE_CHECKING too: a lazy import that
closes a circle still ties the modules together, it only hides the circle until run time.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The names an import statement imports: `from a import b` imports module a.b where there is one, else a."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's own package up
        package = module if is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the deepest module each imported name lies in)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in imported(module, node):
                    while name and name not in MODULES:
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str) -> str:
    return module if is_package(module) else module.rpartition(".")[0]


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_the_graph_sees_imports_inside_functions():
    # workers.tasks names its loops as data: no import; the suite imports the detector registry at the top.
    graph = import_graph()
    assert "workers.detection.detectors" in graph["orchestrator.suite"]
    assert not {m for m in graph["workers.tasks"] if m.startswith(("workers.train", "workers.detection"))}
    assert "workers.detection.map_metrics" in graph["leaderboard.scoring"]  # imported inside detection_scores


def test_no_import_cycle_among_the_workers_modules():
    graph = import_graph()
    workers = {m: {t for t in targets if t.split(".")[0] == "workers"} for m, targets in graph.items()
               if m.split(".")[0] == "workers"}
    assert cycles(workers) == []


def test_no_import_cycle_between_packages():
    """Packages (workers, workers.datasets, workers.detection, orchestrator, ...) import one another one way
    only. A subpackage may use its parent package's own modules (workers.typed, workers.zoo): that edge is
    the nesting, not a circle."""
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        source = package_of(module)
        for target in map(package_of, targets):
            if target != source and not source.startswith(target + "."):
                packages.setdefault(source, set()).add(target)
    assert cycles(packages) == []


def modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported after running `code` in the project root."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300).stdout
    return {name.split(".")[0] for name in out.split()}


HEAVY = {"torch", "torchvision", "cv2", "sklearn"}


def test_planning_a_suite_imports_neither_torch_nor_opencv_nor_sklearn():
    assert not HEAVY & modules_after("import orchestrator.suite")
    # Planning a detection track: each detector's kind, the recipes it refuses, its resolved recipe.
    plan = """
from orchestrator.suite import parse_suite
track = {"architectures": ["alexnet", "fasterrcnn_mobilenet_v3_large_320_fpn"],
         "datasets": [{"name": "synthetic-scenes"}], "overrides": {"alexnet": {"classifier": "svm"}}}
jobs = parse_suite({"name": "s", "detection": track}, "s.toml").jobs()
assert [job.recipe["batch_size"] for job in jobs] == [128, 4]
"""
    assert not HEAVY & modules_after(plan)


def test_scoring_detections_imports_no_torch():
    assert "torch" not in modules_after("import leaderboard.scoring")
    assert "torch" not in modules_after("import workers.detection.map_metrics")


def test_every_task_names_a_loop_that_exists():
    from workers.tasks import TASKS, entry_point

    assert all(callable(entry_point(task.loop)) for task in TASKS.values())


def test_every_detector_names_a_builder_that_exists():
    import torchvision.models.detection

    from workers.detection.detectors import DETECTORS, FASTER_RCNN_ARCHS

    assert all(isinstance(entry.builder(), type) for entry in DETECTORS.values())
    assert all(callable(getattr(torchvision.models.detection, arch, None)) for arch in FASTER_RCNN_ARCHS)


# docs/ARCHITECTURE.md, "The rooms": a package imports only from its own floor or below.
MAY_IMPORT = {
    "db": set(),
    "workers": set(),
    "leaderboard": {"db", "workers"},
    "orchestrator": {"db", "workers", "leaderboard"},
    "gate": {"db", "workers", "leaderboard"},
    "bench": {"db", "workers", "leaderboard", "orchestrator", "gate"},
    "convbench": {"db", "workers", "leaderboard", "orchestrator", "bench", "gate"},
}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'module -> target' for every import of a package its floor does not allow."""
    return sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                  if target.split(".")[0] != module.split(".")[0]
                  and target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]])


def test_every_package_imports_only_from_its_floor_or_below():
    assert set(MAY_IMPORT) == set(PACKAGES), "a new top-level package needs its floor in docs/ARCHITECTURE.md"
    assert upward_imports(import_graph()) == []


def test_the_floor_rule_catches_an_upward_import():
    graph = {"workers.train": {"leaderboard.scoring", "workers.zoo"}, "db.schema": {"workers.jobs"},
             "bench.harness": {"orchestrator.store"}}
    assert upward_imports(graph) == ["db.schema -> workers.jobs", "workers.train -> leaderboard.scoring"]


def test_the_challenge_server_imports_no_deep_learning_stack():
    # The scorer, the validator, the quota and the throttles run in the submission gate: numpy and Arrow only.
    loaded = modules_after("import leaderboard.quota, leaderboard.submissions, leaderboard.scoring, leaderboard.throttle")
    assert not HEAVY & loaded


def test_the_submission_gate_imports_no_deep_learning_stack():
    # The gate is its own process beside the orchestrator; it holds the label-reading role and needs no torch.
    assert not HEAVY & modules_after("import gate.app, gate.__main__")
    assert "torch" not in modules_after("import leaderboard.gate_client")
