"""The package's units import only downward, and no module imports itself back in a circle.

A unit is a subpackage (``nn``, ``ops``, ...) or a top-level module (``tensor``, ``backend``).
Every import counts, also those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numformer

ROOT = Path(numformer.__file__).parent

# Lowest first. A unit may import units of lower layers and its own modules, nothing else.
LAYERS = [
    {"backend", "blas", "serialization"},  # the array module, global numeric state, BLAS probing, saved files
    {"autograd"},  # the graph and backward
    {"ops"},  # primitives and fused kernels (and their thread API, ops._threads)
    {"tensor"},
    {"creation", "testing", "functions", "distributed", "amp"},  # distributed: MPI (mpi4py only under mpiexec)
    # PyTorch's torch.cuda, torch.backends, torch.compile; einops' backend for tensors (einops imported lazily)
    {"cuda", "backends", "compiler", "_einops"},
    {"accelerator"},  # PyTorch's torch.accelerator, answered by cuda
    {"nn"},
    {"optim"},
    {"utils", "data", "viz"},
    {"numformer"},  # the package's facade (numformer/__init__.py): the engine and nf.nn, nf.optim, nf.utils
    {"models"},
    {"train", "interop"},
    {"apps"},  # the seed's section 8 applications: models + data + baselines + scores
    {"onnx"},  # export to ONNX: traces models' primitives, exports the apps' models (imports onnx lazily)
    {"tour"},
    {"cli"},
    {"__main__"},  # python -m numformer: the cli
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "numformer"


def _imports(path: Path) -> set[str]:
    """Every numformer module ``path`` imports (``from numformer.x import y`` counts as x.y
    when x.y is a module, else as x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "numformer"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "numformer":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                as_path = ROOT.parent / Path(*child.split("."))
                is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
                found.add(child if is_module else node.module)
    return found


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in GRAPH} <= set(LAYER), sorted({_unit(m) for m in GRAPH} - set(LAYER))


def test_units_import_only_downward():
    upward = []
    for module, imported in GRAPH.items():
        for target in imported:
            a, b = _unit(module), _unit(target)
            if a != b and LAYER[b] >= LAYER[a]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_the_engine_imports_only_the_backend():
    assert GRAPH["numformer.autograd"] == {"numformer.backend"}
    kernel_deps = {_unit(t) for m, targets in GRAPH.items() if _unit(m) == "ops" for t in targets}
    assert kernel_deps <= {"backend", "autograd", "ops", "blas"}, kernel_deps


def test_only_kernels_touch_the_thread_api():
    users = {m for m, ts in GRAPH.items() if "numformer.ops._threads" in ts}
    outside = {m for m in users if _unit(m) != "ops"} - {
        "numformer",
        "numformer.cli",
        "numformer.distributed",
        "numformer.utils.data._worker",
    }  # facade, CLI, MPI ranks and DataLoader workers (one thread each) set the count
    assert not outside, outside


def test_no_import_cycles():
    """Depth-first search over the module graph; a back edge is a cycle."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(module, stack):
        state[module] = 1
        for target in GRAPH.get(module, ()):
            if target not in GRAPH or _is_package_of(target, module):
                continue
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def _is_package_of(package: str, module: str) -> bool:
    """A module importing its own package's ``__init__`` (which re-exports it) is no cycle of
    dependencies: Python resolves the package first."""
    return module.startswith(package + ".")


def test_the_contributors_layout_lists_every_unit_in_layer_order():
    """CONTRIBUTING.md's "Layout" names each unit once, lowest layer first: it cannot drift from
    the table above (a unit listed out of order, missing or unknown fails)."""
    text = (ROOT.parents[1] / "CONTRIBUTING.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = [line.split("`")[1] for line in section.splitlines() if line.startswith("- `")]
    assert sorted(listed) == sorted(LAYER), (sorted(set(LAYER) - set(listed)), sorted(set(listed) - set(LAYER)))
    layers = [LAYER[u] for u in listed]
    assert layers == sorted(layers), [u for u, a, b in zip(listed[1:], layers, layers[1:]) if b < a]
