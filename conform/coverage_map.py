"""Which files a transform's coverage is measured in, and which of their lines count.

A registry row exercises two implementations of the same modules. Its *files* are

* ``upstream``: the upstream module of every basename in :attr:`TransformSpec.modules` (the
  target's module first, then the ``covers`` modules), e.g. ``torch/fx/passes/split_module.py``;
* ``reference``: ``reference/<basename>.py`` for the same basenames, followed by the private
  helper modules (``reference._*``) they import, directly or through each other: the
  reference splits some modules into helpers that upstream keeps in one file.

Its *measurable lines* are the executable statements of the functions the transform can
call, found by a static call graph over the ASTs of those files:

1. The roots are the row's entry point (the ``target`` attribute, e.g. ``split_module`` or
   the class ``Partitioner``) in the target module, on each side.
2. A function is reachable when a reachable function's body names it: a bare name defined
   at the top of the same file, a name imported from another of the row's files (``from
   torch.fx.operator_schemas import normalize_function``, also imports inside a function),
   or ``alias.name`` where ``alias`` is one of the row's modules. A module-level variable
   that is named counts as naming whatever its value names (a dispatch table of functions).
3. A reachable class contributes every method it defines (``__init__`` and the methods that
   a base class such as ``torch.fx.Transformer`` dispatches to by name), nested classes
   included, and makes its bases reachable when they are defined in the row's files
   (``NormalizeOperators`` -> ``AnnotateTypesWithSchema``).
4. A ``covers`` file that no reachable function names (the row's driver calls into it
   directly) has all its top-level functions and classes as roots.

The lines of a reachable function are coverage.py's executable statements (its own
parser, so the numbers are comparable with what the tracer records) strictly inside the
function's body: the ``def`` line, decorators and class-level statements run when the module
is imported, not when the transform runs, so they are left out. Nested functions and lambdas
are part of their enclosing function. Type annotations do not make anything reachable.

Measurable branches are coverage.py's possible arcs leaving a measurable line that has more
than one exit (what ``coverage report --branch`` counts).

Example::

    >>> from conform.registry import get
    >>> files_for(get("partition"))["upstream"]
    ['.../torch/fx/experimental/accelerator_partitioner.py', '.../torch/fx/experimental/partitioner_utils.py']
    >>> lines = measurable_lines(get("split_module"))
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import os
from collections.abc import Iterable, Iterator

from conform.implementations import Implementation
from conform.registry import TransformSpec

SIDES = ("upstream", "reference")

Arc = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Measurable:
    """What counts in one file for one row: statement lines and branch arcs."""

    path: str
    module: str
    lines: frozenset[int]
    branches: frozenset[Arc]


def module_file(module: str) -> str:
    """The real path of ``module``'s source file, found without importing the module itself."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"module {module!r} has no Python source file")
    return os.path.realpath(spec.origin)


def _imported_modules(path: str) -> Iterator[str]:
    """Absolute module names imported anywhere in the file (relative imports resolved
    against ``reference``, the only package whose helpers are followed)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "reference" + (f".{base}" if base else "")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError):  # "pkg.mod.attr": a parent that is not a package
        return False


def _reference_modules(basenames: Iterable[str]) -> list[str]:
    """``reference.<basename>`` for each basename, then the private helpers they import."""
    modules = [Implementation("reference").module_path(b) for b in basenames]
    seen = set(modules)
    queue = list(modules)
    while queue:
        for name in _imported_modules(module_file(queue.pop(0))):
            if name.startswith("reference._") and name not in seen and _is_module(name):
                seen.add(name)
                modules.append(name)
                queue.append(name)
    return modules


@functools.cache
def modules_for(row: TransformSpec) -> dict[str, list[str]]:
    """``{"upstream": [module, ...], "reference": [module, ...]}``, the target's module first."""
    upstream = [Implementation("upstream").module_path(b) for b in row.modules]
    reference = _reference_modules(row.modules)
    if row.one_sided:  # a user's pass: its own module stands where the reference would
        reference.insert(0, row.target.partition(":")[0])
    return {"upstream": upstream, "reference": reference}


def files_for(row: TransformSpec) -> dict[str, list[str]]:
    """``{"upstream": [path, ...], "reference": [path, ...]}``: the source files whose coverage
    is measured for ``row``, the target's module first on each side."""
    return {side: [module_file(m) for m in mods] for side, mods in modules_for(row).items()}


# -- the static call graph ----------------------------------------------------------------

Key = tuple[str, str]  # (module, qualified name of a top-level def or class)


@dataclasses.dataclass
class _Module:
    name: str
    path: str
    tree: ast.Module
    defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]
    variables: dict[str, list[ast.expr]]  # module-level name -> the values assigned to it
    imports: dict[str, str]  # local name -> "module" or "module:attr"


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, looking inside ``if``/``try``/``with`` blocks (upstream
    defines some classes under ``try: import z3``)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.If, ast.Try, ast.TryStar, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                yield from _top_level(getattr(stmt, field, []))
            for handler in getattr(stmt, "handlers", []):
                yield from _top_level(handler.body)


def _parse(module: str) -> _Module:
    path = module_file(module)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = {}
    variables: dict[str, list[ast.expr]] = {}
    for stmt in _top_level(tree.body):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        variables.setdefault(name.id, []).append(stmt.value)
    imports: dict[str, str] = {}
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports[alias.asname] = alias.name
                else:
                    imports[alias.name.partition(".")[0]] = alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                imports[alias.asname or alias.name] = f"{base}:{alias.name}"
    return _Module(module, path, tree, defs, variables, imports)


class _Names(ast.NodeVisitor):
    """Collects the bare names and ``name.attr`` chains a body loads, skipping annotations."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.attributes: set[tuple[str, str]] = set()

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = [node.attr]
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name):
            dotted = ".".join([value.id, *reversed(chain[1:])])
            self.attributes.add((dotted, node.attr))
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        return  # an annotation names a type, it does not call it

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        body = node.body if isinstance(node.body, list) else [node.body]
        for stmt in body:
            self.visit(stmt)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function  # type: ignore[assignment]


def _names_in(nodes: Iterable[ast.AST]) -> _Names:
    collector = _Names()
    for node in nodes:
        collector.visit(node)
    return collector


class _CallGraph:
    def __init__(self, modules: list[str]) -> None:
        self.modules = {m: _parse(m) for m in modules}
        self.reachable: set[Key] = set()

    def _resolve_import(self, ref: str) -> Key | str | None:
        """An import target: a def in one of our modules, one of our modules, or None."""
        module, _, attr = ref.partition(":")
        if attr:
            if module in self.modules and attr in self.modules[module].defs:
                return (module, attr)
            if f"{module}.{attr}" in self.modules:
                return f"{module}.{attr}"
            return None
        return module if module in self.modules else None

    def _targets(self, mod: _Module, names: _Names, seen_vars: set[str]) -> Iterator[Key]:
        for name in names.names:
            if name in mod.defs:
                yield (mod.name, name)
            elif name in mod.imports:
                found = self._resolve_import(mod.imports[name])
                if isinstance(found, tuple):
                    yield found
            if name in mod.variables and name not in mod.defs and name not in seen_vars:
                seen_vars.add(name)
                yield from self._targets(mod, _names_in(mod.variables[name]), seen_vars)
        for dotted, attr in names.attributes:
            target = mod.imports.get(dotted.partition(".")[0]) if "." not in dotted else None
            module = self._resolve_import(target) if target else None
            if module is None and dotted in self.modules:
                module = dotted  # a fully spelled "torch.fx.operator_schemas.normalize_function"
            if isinstance(module, str) and attr in self.modules[module].defs:
                yield (module, attr)

    def visit(self, roots: Iterable[Key]) -> None:
        queue = [r for r in roots if r not in self.reachable]
        self.reachable.update(queue)
        while queue:
            module, name = queue.pop()
            mod = self.modules[module]
            node = mod.defs[name]
            if isinstance(node, ast.ClassDef):
                bodies: list[ast.AST] = [s for s in ast.walk(node) if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
                bodies.extend(node.bases)
            else:
                bodies = [node]
            for key in self._targets(mod, _names_in(bodies), set()):
                if key not in self.reachable:
                    self.reachable.add(key)
                    queue.append(key)

    def spans(self, module: str) -> list[tuple[int, int]]:
        """Body line spans of the reachable functions (methods, for a class) in ``module``."""
        spans = []
        for mod_name, name in self.reachable:
            if mod_name != module:
                continue
            node = self.modules[module].defs[name]
            functions = [
                n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            ] if isinstance(node, ast.ClassDef) else [node]
            for fn in functions:
                spans.append((fn.body[0].lineno, fn.end_lineno or fn.body[-1].lineno))
        return spans


def _reachable(row: TransformSpec, modules: list[str], entry_module: str) -> _CallGraph:
    graph = _CallGraph(modules)
    attr = row.target.partition(":")[2].split(".")[0]
    if attr not in graph.modules[entry_module].defs and row.one_sided:
        # a user's pass bound to an instance or an import: all of its module counts
        graph.visit((entry_module, name) for name in graph.modules[entry_module].defs)
        return graph
    if attr not in graph.modules[entry_module].defs:
        raise ValueError(f"row {row.name!r}: {entry_module} defines no {attr!r} at its top level")
    graph.visit([(entry_module, attr)])
    # a covers module nothing reaches is called by the driver directly: all of it counts
    for basename in row.covers:
        for module in modules:
            if module.rpartition(".")[2] == basename and not any(m == module for m, _ in graph.reachable):
                graph.visit((module, name) for name in graph.modules[module].defs)
    return graph


@functools.cache
def _coverage() -> object:
    import coverage

    return coverage.Coverage(data_file=None, branch=True, config_file=False)


@functools.cache
def _statements(path: str) -> tuple[frozenset[int], frozenset[Arc], dict[int, int]]:
    """coverage.py's statements, possible arcs and exit counts of a source file."""
    from coverage.python import PythonFileReporter

    reporter = PythonFileReporter(path, _coverage())
    excluded = reporter.excluded_lines()
    no_branch = reporter.no_branch_lines()
    arcs = frozenset(a for a in reporter.arcs() if a[0] not in no_branch and a[1] not in excluded)
    return frozenset(reporter.lines()), arcs, dict(reporter.exit_counts())


@functools.cache
def measurable(row: TransformSpec) -> dict[str, list[Measurable]]:
    """``{"upstream": [Measurable, ...], "reference": [...]}`` in :func:`files_for` order."""
    result: dict[str, list[Measurable]] = {}
    for side, modules in modules_for(row).items():
        if not modules:  # the upstream side of a one-sided row
            result[side] = []
            continue
        graph = _reachable(row, modules, modules[0])
        entries = []
        for module in modules:
            path = module_file(module)
            statements, arcs, exits = _statements(path)
            spans = graph.spans(module)
            lines = frozenset(n for n in statements if any(lo <= n <= hi for lo, hi in spans))
            branches = frozenset(a for a in arcs if a[0] in lines and exits.get(a[0], 0) > 1)
            entries.append(Measurable(path, module, lines, branches))
        result[side] = entries
    return result


def measurable_lines(row: TransformSpec) -> dict[str, set[int]]:
    """Per file path (both sides), the executable lines of the functions ``row`` can call
    (see the module docstring for the definition)."""
    return {m.path: set(m.lines) for side in SIDES for m in measurable(row)[side]}


def measurable_branches(row: TransformSpec) -> dict[str, set[Arc]]:
    """Per file path (both sides), the branch arcs leaving measurable lines."""
    return {m.path: set(m.branches) for side in SIDES for m in measurable(row)[side]}
