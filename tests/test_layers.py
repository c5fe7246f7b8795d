"""The package's layers (docs/design.md): what a user calls and the building blocks never import the engine, no two
modules import each other in a circle, and no file grows past a reader's sitting.

The checker reads the sources with ``ast`` (nothing is imported), so it sees imports inside functions too: a
function-level import of the engine is still a layer violation, and a function-level circle still ties two modules
together (it only hides from Python's import machinery).
"""
import ast
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = 'bdl_mm'
# may not import bdl_mm.engine
LOWER_LAYERS = ('apis', 'models', 'datasets', 'evaluation', 'structures', 'utils', 'visualization')
MAX_LINES = 400
MAX_LOOP_LINES = 300


def module_files(root: str, package: str) -> dict:
    """``{dotted module name: path}`` of every .py file of ``package`` under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(osp.join(root, package)):
        for name in files:
            if name.endswith('.py'):
                rel = osp.relpath(osp.join(dirpath, name), root)[:-3].replace(os.sep, '.')
                out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = osp.join(dirpath, name)
    return out


def imports_of(module: str, path: str, modules: dict) -> set:
    """The package modules that ``module`` imports (relative imports resolved; ``from pkg import sub`` counts as
    an import of ``pkg.sub`` when that is a module, else of ``pkg``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_pkg = path.endswith('__init__.py')
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.') if is_pkg else module.split('.')[:-1]
                base = base[:len(base) - node.level + 1]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ''
            names = [f'{prefix}.{a.name}' if f'{prefix}.{a.name}' in modules else prefix for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a module a.b.c; a name inside a.b: a.b
                name = name.rpartition('.')[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root: str, package: str) -> dict:
    modules = module_files(root, package)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def layer_violations(graph: dict, package: str = PACKAGE) -> list:
    engine = f'{package}.engine'
    return sorted(f'{m} imports {d}' for m, deps in graph.items() for d in deps
                  if m.split('.')[1:2] and m.split('.')[1] in LOWER_LAYERS
                  and (d == engine or d.startswith(engine + '.')))


def import_cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan). A package ``__init__`` that imports its own
    submodules is not a circle by itself: edges from a package into its own subpackages are left out."""
    def inside(a, b):
        return b.startswith(a + '.')

    edges = {m: {d for d in deps if not inside(m, d)} for m, deps in graph.items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_lower_layers_do_not_import_the_engine():
    assert layer_violations(import_graph(ROOT, PACKAGE)) == []


def test_no_import_circles():
    assert import_cycles(import_graph(ROOT, PACKAGE)) == []


def test_file_sizes():
    too_long = {}
    for module, path in module_files(ROOT, PACKAGE).items():
        with open(path) as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            too_long[module] = n
    assert too_long == {}
    with open(osp.join(ROOT, PACKAGE, 'engine', 'loops', 'bidirectional_loop.py')) as f:
        assert sum(1 for _ in f) <= MAX_LOOP_LINES


@pytest.fixture
def bad_package(tmp_path):
    """A package with one layer violation (a function-level import in apis) and one circle (models a <-> b)."""
    files = {
        'pkg/__init__.py': 'from . import apis, engine, models\n',
        'pkg/engine/__init__.py': 'from .loop import Loop\n',
        'pkg/engine/loop.py': 'from ..apis.tool import tool\nclass Loop: pass\n',
        'pkg/apis/__init__.py': '',
        'pkg/apis/tool.py': 'def tool():\n    from ..engine.loop import Loop\n    return Loop\n',
        'pkg/models/__init__.py': '',
        'pkg/models/a.py': 'from pkg.models import b\n',
        'pkg/models/b.py': 'from .a import x\n',
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return str(tmp_path)


def test_checker_finds_a_violation_and_a_circle(bad_package):
    graph = import_graph(bad_package, 'pkg')
    assert graph['pkg.engine.loop'] == {'pkg.apis.tool'}
    assert layer_violations(graph, 'pkg') == ['pkg.apis.tool imports pkg.engine.loop']
    # engine.loop -> apis.tool -> engine.loop, and models.a <-> models.b
    assert sorted(import_cycles(graph)) == [['pkg.apis.tool', 'pkg.engine.loop'], ['pkg.models.a', 'pkg.models.b']]
