"""Trace code that uses Python ``assert`` by rewriting it first.

Reference counterpart of ``torch.fx.experimental.rewriter``. Symbolic tracing cannot follow
``assert cond, msg``: the condition is a Proxy, and asking for its truth value is control
flow. :class:`RewritingTracer` re-compiles each ``forward`` it will trace (and a traced free
function) with every ``assert`` turned into a ``torch._assert(cond, msg)`` call, which the
tracer records as a graph node that raises when the condition fails at run time.
"""

from __future__ import annotations
import __future__

import ast
import copy
import inspect
import types
from collections.abc import Callable
from types import FunctionType
from typing import Any

import torch
from torch.fx._symbolic_trace import Tracer
from torch.fx.graph import Graph
from torch.fx.proxy import Proxy

__all__ = ["AST_Rewriter", "RewritingTracer"]

# Rewritten code reaches its helpers through these closure variables, so it needs nothing
# from the function's module globals (which may not even import ``torch``). A single leading
# underscore keeps them clear of class-private name mangling.
_ASSERT_NAME = "_fx_rewriter_assert_"
_ANNOTATE_NAME = "_fx_rewriter_annotate_"
_SCOPE_NAME = "_fx_rewriter_scope_"

# ``from __future__`` features are per compilation: the rewritten code is compiled with the
# ones the original was compiled with (postponed annotations, above all), not this module's.
_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag


def _annotate(value: Any, annotation: Any) -> Any:
    """Runtime half of a rewritten ``name: T = value``: a traced value gets ``T`` as its
    node type; anything else passes through."""
    if not isinstance(value, Proxy):
        return value
    if value.node.type:
        raise RuntimeError(
            f"Tried to annotate a value that already had a type on it! Existing type is "
            f"{value.node.type} and new type is {annotation}."
        )
    value.node.type = annotation
    return value


def _needs_rewrite(tree: ast.AST) -> bool:
    return any(isinstance(node, (ast.Assert, ast.AnnAssign)) for node in ast.walk(tree))


def _parse_function(func: FunctionType) -> ast.FunctionDef | None:
    """The ``def`` of ``func`` as an AST whose line numbers are those of its source file,
    or None when the source cannot be had or is not a ``def`` (a lambda)."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    # A method's source is indented. Dedenting fails when a multi-line string literal in
    # the body starts lines at column 0, so the code is nested under a dummy block instead;
    # string contents stay byte for byte what they were.
    nested = source[:1].isspace()
    tree = ast.parse("if True:\n" + source if nested else source)
    ast.increment_lineno(tree, func.__code__.co_firstlineno - 1 - int(nested))
    node = tree.body[0].body[0] if nested else tree.body[0]  # type: ignore[attr-defined]
    return node if isinstance(node, ast.FunctionDef) else None


def _owner_class(func: FunctionType) -> str | None:
    """The name of the class ``func`` was defined in, which private names are mangled with."""
    parts = func.__qualname__.split(".")
    if len(parts) >= 2 and parts[-2] != "<locals>":
        return parts[-2]
    return None


class AST_Rewriter(ast.NodeTransformer):
    """Rewrite a function's syntax tree so that symbolic tracing can follow it.

    ``assert cond`` and ``assert cond, msg`` become ``torch._assert(cond, msg)`` (an empty
    message when none is given); an annotated assignment ``name: T = value`` becomes
    ``name = annotate(value, T)``, recording ``T`` as the traced value's type, and a bare
    declaration ``name: T`` is dropped.

    :meth:`rewrite` returns a new function with the original's globals, closure cells,
    defaults and metadata, so it behaves as the original apart from the rewritten
    statements. Decorators are not re-applied: the undecorated function is rewritten.
    """

    def rewrite(self, fn: FunctionType) -> FunctionType:
        """Return ``fn`` recompiled with its statements rewritten.

        Args:
            fn (FunctionType): a function or bound method.

        Returns:
            FunctionType: the rewritten function, or ``fn`` itself when it contains nothing
            to rewrite or its source is not available.
        """
        func = inspect.unwrap(getattr(fn, "__func__", fn))
        if not isinstance(func, FunctionType):
            return fn
        definition = _parse_function(func)
        if definition is None or not _needs_rewrite(definition):
            return fn
        definition.decorator_list = []
        definition = self.visit(definition)
        return _recompile(func, definition)

    def visit_Assert(self, node: ast.Assert) -> ast.Expr:
        """``assert test, msg`` -> ``torch._assert(test, msg)``."""
        self.generic_visit(node)
        message = node.msg if node.msg is not None else ast.Constant(value="")
        call = ast.Call(
            func=ast.Name(id=_ASSERT_NAME, ctx=ast.Load()),
            args=[node.test, message],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(value=call), node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.Assign:
        """``target: T = value`` -> ``target = annotate(value, T)``."""
        self.generic_visit(node)
        if node.value is None:
            # A declaration without a value does nothing at run time.
            return ast.copy_location(ast.Pass(), node)  # type: ignore[return-value]
        call = ast.Call(
            func=ast.Name(id=_ANNOTATE_NAME, ctx=ast.Load()),
            args=[node.value, node.annotation],
            keywords=[],
        )
        return ast.copy_location(ast.Assign(targets=[node.target], value=call), node)


def _recompile(func: FunctionType, definition: ast.FunctionDef) -> FunctionType:
    """Compile ``definition`` as a replacement for ``func``.

    The definition is compiled nested in a scope function whose parameters are ``func``'s
    free variables (``__class__`` included, which zero-argument ``super()`` needs) and the
    helper names; the resulting code object is then bound to ``func``'s own closure cells,
    so the rewritten function sees the same variables, not copies.
    """
    free_names = list(func.__code__.co_freevars)
    scope_params = [*free_names, _ASSERT_NAME, _ANNOTATE_NAME]
    scope = ast.parse(f"def {_SCOPE_NAME}({', '.join(scope_params)}):\n    pass").body[0]
    assert isinstance(scope, ast.FunctionDef)
    scope.body = [definition, ast.Return(value=ast.Name(id=definition.name, ctx=ast.Load()))]
    owner = _owner_class(func)
    top: ast.stmt = scope
    if owner is not None:
        # Compiling inside a class of the same name mangles ``self.__private`` exactly as
        # the original compilation did.
        top = ast.parse(f"class {owner}:\n    pass").body[0]
        top.body = [scope]  # type: ignore[attr-defined]
    module = ast.fix_missing_locations(ast.Module(body=[top], type_ignores=[]))
    namespace: dict[str, Any] = {}
    flags = func.__code__.co_flags & _FUTURE_FLAGS
    exec(compile(module, func.__code__.co_filename, "exec", flags=flags, dont_inherit=True), namespace)
    make = getattr(namespace[owner], _SCOPE_NAME) if owner is not None else namespace[_SCOPE_NAME]

    helper_values = {_ASSERT_NAME: torch._assert, _ANNOTATE_NAME: _annotate}
    inner = make(*[helper_values.get(name) for name in scope_params])
    own_cells = dict(zip(free_names, func.__closure__ or ()))
    closure = tuple(
        own_cells.get(name, cell) for name, cell in zip(inner.__code__.co_freevars, inner.__closure__ or ())
    )
    rewritten = FunctionType(inner.__code__, func.__globals__, func.__name__, func.__defaults__, closure or None)
    rewritten.__kwdefaults__ = copy.copy(func.__kwdefaults__)
    rewritten.__qualname__ = func.__qualname__
    rewritten.__module__ = func.__module__
    rewritten.__doc__ = func.__doc__
    rewritten.__annotations__ = dict(func.__annotations__)
    rewritten.__dict__.update(func.__dict__)
    return rewritten


def _rewrite_module(
    module: torch.nn.Module,
    is_leaf: Callable[[torch.nn.Module, str], bool],
    qualname: str,
    classes: dict[tuple[type, Any], type],
) -> torch.nn.Module:
    """A copy of ``module`` whose ``forward`` and whose traced-through descendants'
    ``forward`` are rewritten; ``module`` itself when nothing needed rewriting."""
    if qualname and is_leaf(module, qualname):
        return module  # the tracer records a leaf as one call and never runs its forward

    children = {}
    for name, child in module._modules.items():
        path = f"{qualname}.{name}" if qualname else name
        children[name] = child if child is None else _rewrite_module(child, is_leaf, path, classes)
    children_changed = any(children[name] is not child for name, child in module._modules.items())

    cls = type(module)
    own_forward = module.__dict__.get("forward")
    forward = own_forward if own_forward is not None else cls.forward
    new_forward = _rewrite_callable(forward)
    if new_forward is forward and not children_changed:
        return module

    clone_cls = cls
    if own_forward is None and new_forward is not forward:
        # A subclass that only swaps ``forward`` keeps every other method, property and
        # ``super()`` call of the original class working.
        key = (cls, forward)
        if key not in classes:
            namespace = {"forward": new_forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
            classes[key] = type(cls)(cls.__name__, (cls,), namespace)
        clone_cls = classes[key]
    clone = object.__new__(clone_cls)
    clone.__dict__.update(module.__dict__)
    clone.__dict__["_modules"] = children
    clone.__dict__["_parameters"] = dict(module._parameters)
    clone.__dict__["_buffers"] = dict(module._buffers)
    if own_forward is not None:
        clone.__dict__["forward"] = new_forward
    return clone


def _rewrite(
    fn: torch.nn.Module | Callable[..., Any],
    is_leaf: Callable[[torch.nn.Module, str], bool] | None = None,
) -> torch.nn.Module | Callable[..., Any]:
    """Rewrite a free function, or a module hierarchy down to its leaves."""
    if isinstance(fn, torch.nn.Module):
        return _rewrite_module(fn, is_leaf or Tracer().is_leaf_module, "", {})
    return _rewrite_callable(fn)


def _rewrite_callable(fn: Any) -> Any:
    if isinstance(fn, types.MethodType):
        func = _rewrite_callable(fn.__func__)
        return fn if func is fn.__func__ else types.MethodType(func, fn.__self__)
    if isinstance(fn, FunctionType):
        return AST_Rewriter().rewrite(fn)
    return fn


class RewritingTracer(Tracer):
    """A :class:`~torch.fx.Tracer` that first rewrites ``assert`` statements (see
    :class:`AST_Rewriter`) in the code it will trace: a free function, or the ``forward``
    of the root module and of every submodule it traces through (leaf modules are called,
    not traced, and stay as they are). The modules themselves are not modified.

    Example::

        graph = RewritingTracer().trace(module)
        traced = torch.fx.GraphModule(module, graph)
    """

    def trace(
        self,
        root: torch.nn.Module | Callable[..., Any],
        concrete_args: dict[str, Any] | None = None,
    ) -> Graph:
        """Trace ``root`` after rewriting it.

        Args:
            root (Union[nn.Module, Callable]): the module or function to trace.
            concrete_args (Optional[Dict[str, Any]]): inputs not to be treated as proxies.

        Returns:
            Graph: the traced graph, with ``torch._assert`` nodes in place of asserts.
        """
        graph = super().trace(_rewrite(root, self.is_leaf_module), concrete_args)
        graph.lint()
        return graph
