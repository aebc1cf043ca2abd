"""Inline Python definitions into a standalone script.

:func:`inline` takes top-level functions or classes and returns the source of everything
they need from the project: the definitions themselves, the project definitions they refer
to (followed across ``from generators.sources import Built`` and the like), the module-level
statements that complete them (``Cls.forward.__annotations__[...] = ...``), and the imports
of everything else (torch, the standard library). A script made of that text imports nothing
of fx-conform.

Example::

    >>> imports, body, future = inline([conform.witnesses.split.kwargs_forward])
    >>> "class KwargsForward" in body and "class Built" in body
    True
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import sys
from typing import Any

#: Top-level packages of this project: definitions from them are copied, never imported.
PROJECT_PACKAGES = frozenset({"conform", "generators", "reference"})


#: Project definitions written in a shorter form than their original (no docs about fields
#: a repro never reads).
SUBSTITUTES: dict[tuple[str, str], str] = {
    ("generators.sources", "Built"): (
        "@dataclasses.dataclass\n"
        "class Built:\n"
        '    """A module, the arguments to call it with, and how to trace it."""\n'
        "\n"
        "    module: torch.nn.Module\n"
        "    args: tuple\n"
        "    kwargs: dict = dataclasses.field(default_factory=dict)\n"
        "    stochastic: bool = False\n"
        "    concrete_args: dict | None = None\n"
        "    leaf_modules: tuple = ()"
    ),
}

#: Top-level modules that are not the standard library, imported after it.
_THIRD_PARTY = ("torch", "torchvision", "sympy", "z3", "numpy")


class InlineError(Exception):
    """A definition cannot be copied into a standalone script (a name defined twice, a
    project import that cannot be followed, an object without source)."""


@dataclasses.dataclass
class _Module:
    name: str
    tree: ast.Module
    future_annotations: bool
    defs: dict[str, ast.stmt]  # top-level name -> the statement that defines it
    order: dict[int, int]  # id(stmt) -> position in the module
    imports: dict[str, tuple[str, str, int]]  # bound name -> (module, attribute, level)
    plain: dict[str, list[str]]  # bound name -> its ``import x.y [as z]`` lines
    attached: dict[str, list[ast.stmt]]  # name -> statements completing it (X.attr = ...)


@functools.lru_cache(maxsize=64)
def _parse(module_name: str) -> _Module:
    module = importlib.import_module(module_name)
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError) as exc:
        raise InlineError(f"no source for module {module_name}: {exc}") from exc
    tree = ast.parse(source)
    info = _Module(module_name, tree, False, {}, {}, {}, {}, {})
    for position, stmt in enumerate(tree.body):
        info.order[id(stmt)] = position
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            info.future_annotations |= any(a.name == "annotations" for a in stmt.names)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                bound = alias.asname or alias.name.partition(".")[0]
                line = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                info.plain.setdefault(bound, []).append(line)
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                info.imports[alias.asname or alias.name] = (stmt.module or "", alias.name, stmt.level)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            info.defs[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    info.defs.setdefault(target.id, stmt)
                else:
                    root = _root_name(target)
                    if root is not None:
                        info.attached.setdefault(root, []).append(stmt)
        elif isinstance(stmt, ast.Expr):
            root = _root_name(stmt.value.func) if isinstance(stmt.value, ast.Call) else None
            if root is not None and not isinstance(stmt.value, ast.Constant):
                info.attached.setdefault(root, []).append(stmt)
    return info


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _used_names(stmt: ast.stmt, skip_annotations: bool) -> list[str]:
    """Names a statement reads (annotations left out when they are never evaluated)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if skip_annotations:
            if isinstance(node, ast.arg):
                return
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for child in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
                    if child is not None:
                        visit(child)
                for child in node.body:
                    visit(child)
                return
            if isinstance(node, ast.AnnAssign):
                if node.value is not None:
                    visit(node.value)
                return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            found.append(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(stmt)
    return list(dict.fromkeys(found))


class _DropAnnotations(ast.NodeTransformer):
    """Removes annotations, for definitions copied into a script that evaluates them (the
    names they mention are not copied)."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:
        if node.value is None:
            return ast.Pass() if node.simple else None
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


class _Collector:
    def __init__(self, strip_annotations: bool = False) -> None:
        self.strip_annotations = strip_annotations
        self.imports: dict[str, str] = {}  # import line -> itself, in first-seen order
        self.bound: dict[str, str] = {}  # name bound by a from-import -> its line
        self.emitted: dict[str, str] = {}  # defined name -> module it came from
        self.done: set[int] = set()
        self.chunks: list[str] = []
        self.future = False

    def name(self, module: _Module, name: str) -> None:
        if name in module.defs:
            self.statement(module, module.defs[name])
            for stmt in module.attached.get(name, ()):
                self.statement(module, stmt)
        elif name in module.imports:
            self.imported(module, name)
        elif name in module.plain:
            for line in module.plain[name]:
                if line.split()[1].partition(".")[0] in PROJECT_PACKAGES:
                    raise InlineError(f"{module.name} imports a project module as a whole: {line}")
                self.imports.setdefault(line, line)
        # otherwise a builtin or a local of some function

    def imported(self, module: _Module, bound: str) -> None:
        source, attr, level = module.imports[bound]
        if level:
            package = module.name.rpartition(".")[0]
            source = importlib.util.resolve_name("." * level + source, package)  # type: ignore[attr-defined]
        if source.partition(".")[0] in PROJECT_PACKAGES:
            self.name(_parse(source), attr)
            if attr != bound:
                self._line(bound, f"{bound} = {attr}", module.name)
            return
        line = f"from {source} import {attr}" + (f" as {bound}" if bound != attr else "")
        previous = self.bound.get(bound)
        if previous is not None and previous != line:
            raise InlineError(f"the name {bound} is imported two ways: {previous!r} and {line!r}")
        self.bound[bound] = line
        self.imports.setdefault(line, line)

    def _line(self, name: str, text: str, origin: str) -> None:
        if name not in self.emitted:
            self.emitted[name] = origin
            self.chunks.append(text)

    def statement(self, module: _Module, stmt: ast.stmt) -> None:
        if id(stmt) in self.done:
            return
        self.done.add(id(stmt))
        self.future |= module.future_annotations
        defined = _defined(stmt)
        for name in defined:
            if self.emitted.get(name, module.name) != module.name:
                raise InlineError(f"{name} is defined both in {self.emitted[name]} and in {module.name}")
        for used in _used_names(stmt, module.future_annotations):
            if used in defined or used in vars(builtins):
                continue
            self.name(module, used)
        for name in defined:
            self.emitted[name] = module.name
        substitute = next((SUBSTITUTES[(module.name, n)] for n in defined if (module.name, n) in SUBSTITUTES), None)
        if substitute is None and self.strip_annotations and module.future_annotations:
            tree = ast.fix_missing_locations(_DropAnnotations().visit(copy.deepcopy(stmt)))
            substitute = ast.unparse(tree)
        self.chunks.append(substitute or _segment(module.name, stmt))


def _defined(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


@functools.lru_cache(maxsize=64)
def _lines(module_name: str) -> list[str]:
    return inspect.getsource(sys.modules[module_name]).splitlines()


def _segment(module_name: str, stmt: ast.stmt) -> str:
    """The statement's text as written, decorators included."""
    decorators = getattr(stmt, "decorator_list", None) or []
    start = min([stmt.lineno, *(d.lineno for d in decorators)])
    return "\n".join(_lines(module_name)[start - 1:stmt.end_lineno])


def inline(objects: list[Any], *, names: list[tuple[str, str]] = (),
           strip_annotations: bool = False) -> tuple[str, str, bool]:
    """The source a script needs to define ``objects`` without importing the project.

    Args:
        objects: top-level functions or classes of importable modules.
        names: further ``(module, name)`` pairs to define.
        strip_annotations: copy definitions from modules that postpone annotations without
            their annotations, for a script that does not postpone them.

    Returns:
        ``(imports, definitions, future_annotations)``: the import lines, the definitions in
        an order that defines every name before module-level code reads it, and whether
        any copied module postpones the evaluation of annotations (the script must too).

    Raises:
        InlineError: when a definition cannot be copied.
    """
    collector = _Collector(strip_annotations)
    wanted = [(obj.__module__, obj.__name__) for obj in objects] + list(names)
    for module_name, name in wanted:
        if "<locals>" in name or module_name == "__main__":
            raise InlineError(f"{module_name}.{name} is not a top-level definition of a module")
        module = _parse(module_name)
        if name not in module.defs:
            raise InlineError(f"{module_name} does not define {name} at top level")
        collector.name(module, name)
    imports = "\n".join(sorted(dict.fromkeys(collector.imports.values()), key=import_order))
    return imports, "\n\n\n".join(collector.chunks), collector.future


def import_order(line: str) -> tuple[int, int, str]:
    top = line.split()[1].partition(".")[0]
    return (1 if top in _THIRD_PARTY else 0, 0 if line.startswith("import ") else 1, line)
