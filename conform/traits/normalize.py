"""Traits of the known divergences in the normalization and tracing family: NormalizeOperators,
NormalizeArgs, the meta tracer and the rewriting tracer."""

from __future__ import annotations
import __future__

import ast
import copy
import inspect
import textwrap
import types
from typing import Any

import torch
import torch.fx

from conform.traits._values import node_values
from generators.sources import Built

# --- NormalizeOperators ------------------------------------------------------------------------

# The torch functions upstream respells as operators whenever they get two positional operands.
_RESPELLED = (
    torch.add, torch.sub, torch.mul, torch.div, torch.floor_divide, torch.remainder,
    torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge,
)

# Keyword values under which the call still means the bare operator.
_NEUTRAL = {"alpha": 1, "rounding_mode": None}


def _is_neutral(name: str, value: Any) -> bool:
    if name not in _NEUTRAL or isinstance(value, torch.fx.Node):
        return False
    neutral = _NEUTRAL[name]
    return value is neutral if neutral is None else (type(value) in (int, float) and value == neutral)


def binary_op_with_keywords(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A torch.add/sub/mul/div/... call with two positional operands and a keyword argument
    away from its neutral value (``alpha=2``, ``rounding_mode="floor"``, ``out=``)."""
    return any(
        node.op == "call_function"
        and any(node.target is fn for fn in _RESPELLED)
        and len(node.args) == 2
        and any(not _is_neutral(name, value) for name, value in node.kwargs.items())
        for node in graph_module.graph.nodes
    )


# --- NormalizeArgs -----------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, bool | int | float | complex)


def _takes_self(node: torch.fx.Node) -> bool:
    """Whether the call's callable names one of the arguments it is given 'self': an aten
    overload (or packet) with a 'self' parameter, or a torch function called with a number
    where one of its schemas has a Scalar 'self' (``torch.pow(2, x)``)."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return any(a.name == "self" for a in target._schema.arguments)
    if isinstance(target, torch._ops.OpOverloadPacket):
        return any(
            a.name == "self"
            for overload in target.overloads()
            for a in getattr(target, overload)._schema.arguments
        )
    if getattr(target, "__module__", None) not in ("torch", "torch._C._VariableFunctions"):
        return False
    name = getattr(target, "__name__", "")
    try:
        schemas = torch._C._jit_get_schemas_for_operator(f"aten::{name}")
    except RuntimeError:
        return False
    for schema in schemas:
        for position, argument in enumerate(schema.arguments):
            if argument.name != "self" or str(argument.type) not in ("Scalar", "number"):
                continue
            given = node.args[position] if position < len(node.args) else node.kwargs.get("self")
            if _number(given):
                return True
    return False


def calls_with_self_parameter(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A call whose callable takes a 'self' argument (an aten overload, a Scalar-'self'
    torch overload) normalized to keywords, or given 'self' by keyword."""
    keywords = bool(params.get("normalize_to_only_use_kwargs", False))
    return any(
        node.op == "call_function" and (keywords or "self" in node.kwargs) and _takes_self(node)
        for node in graph_module.graph.nodes
    )


def calls_nonzero(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A ``torch.nonzero`` call, whose signatures are written by hand."""
    return any(node.op == "call_function" and node.target is torch.nonzero for node in graph_module.graph.nodes)


def calls_typed_by_argument(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A call whose overload the two implementations resolve from different argument types:
    a node or a sequence passed by keyword, or a positional node argument whose value's type
    is not the type of the call's own result (``torch.max(x, 1)`` returns a tuple)."""
    values = None
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        if any(isinstance(v, torch.fx.Node | list | tuple) for v in node.kwargs.values()):
            return True
        if values is None:
            values = node_values(graph_module, built)
        own = type(values.get(node))
        if any(type(values.get(arg)) is not own for arg in node.all_input_nodes if arg in values):
            return True
    return False


# --- forward sources ---------------------------------------------------------------------------


def _function(method: Any) -> types.FunctionType | None:
    fn = getattr(method, "__func__", method)
    return fn if isinstance(fn, types.FunctionType) else None


def _syntax(fn: types.FunctionType) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None


def _root_forward(built: Built) -> types.FunctionType | None:
    return _function(built.module.forward)


# --- meta tracer -------------------------------------------------------------------------------


def _is_dim_zero(value: Any) -> bool:
    return type(value) is int and value == 0


def _size_of_dim_zero_in(tree: ast.AST) -> bool:
    for found in ast.walk(tree):
        if isinstance(found, ast.Call) and isinstance(found.func, ast.Attribute) and found.func.attr == "size":
            given = [a.value for a in found.args[:1] if isinstance(a, ast.Constant)]
            given += [k.value.value for k in found.keywords if k.arg == "dim" and isinstance(k.value, ast.Constant)]
            if any(_is_dim_zero(v) for v in given):
                return True
    return False


def size_of_dim_zero(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """``x.size(0)`` (or ``size(dim=0)``) in code the meta tracer follows: the traced graph,
    or the forward of a module the case keeps as a leaf only for plain symbolic_trace."""
    for node in graph_module.graph.nodes:
        if node.op == "call_method" and node.target == "size":
            if (len(node.args) > 1 and _is_dim_zero(node.args[1])) or _is_dim_zero(node.kwargs.get("dim")):
                return True
    for module in built.module.modules():
        if isinstance(module, built.leaf_modules):
            fn = _function(type(module).forward)
            tree = _syntax(fn) if fn else None
            if tree is not None and _size_of_dim_zero_in(tree):
                return True
    return False


# Module classes upstream's meta tracer computes without calling their forward.
_META_OVERRIDDEN = (torch.nn.Embedding, torch.nn.LayerNorm, torch.nn.ReLU)


def _to_meta(value: Any) -> Any:
    return torch.fx.node.map_aggregate(
        value, lambda v: v.to(device="meta") if isinstance(v, torch.Tensor) else v
    )


def _has_state(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def leaf_module_with_state(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A leaf module call whose output metadata cannot be computed from meta inputs with the
    module's own (CPU) parameters and buffers, and can with them on the meta device."""
    calls = []
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = graph_module.get_submodule(str(node.target))
            if _has_state(module) and not isinstance(module, _META_OVERRIDDEN):
                calls.append((node, module))
    if not calls:
        return False
    values = node_values(graph_module, built)
    for node, module in calls:
        args = _to_meta(torch.fx.node.map_arg(node.args, lambda n: values[n]))
        kwargs = _to_meta(torch.fx.node.map_arg(node.kwargs, lambda n: values[n]))
        try:
            module(*args, **kwargs)
            continue
        except Exception:
            pass
        try:
            copy.deepcopy(module).to(device="meta")(*args, **kwargs)
        except Exception:
            continue
        return True
    return False


# --- rewriting tracer --------------------------------------------------------------------------


def assert_in_submodule(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """A submodule the tracer follows (not a torch.nn leaf) has an ``assert`` in its
    forward; upstream rewrites the root's forward only."""
    tracer = torch.fx.Tracer()
    for name, module in built.module.named_modules():
        if not name or tracer.is_leaf_module(module, name):
            continue
        fn = _function(type(module).forward)
        tree = _syntax(fn) if fn else None
        if tree is not None and any(isinstance(found, ast.Assert) for found in ast.walk(tree)):
            return True
    return False


def _root_syntax(built: Built) -> ast.AST | None:
    fn = _root_forward(built)
    return _syntax(fn) if fn else None


def private_name_in_forward(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The root's forward reads a class-private attribute (``self.__scale``), a name Python
    mangles only when compiling inside the class."""
    tree = _root_syntax(built)
    return tree is not None and any(
        isinstance(found, ast.Attribute) and found.attr.startswith("__") and not found.attr.endswith("__")
        for found in ast.walk(tree)
    )


def annotated_assignment_in_forward(graph_module: torch.fx.GraphModule, built: Built,
                                    params: dict[str, Any]) -> bool:
    """The root's forward has an annotated assignment or declaration (``y: T = v``, ``y: T``)."""
    tree = _root_syntax(built)
    return tree is not None and any(isinstance(found, ast.AnnAssign) for found in ast.walk(tree))


# What a class body always defines; none of it is behaviour the forward can lose.
_CLASS_BOOKKEEPING = frozenset({
    "forward", "__init__", "__module__", "__qualname__", "__doc__", "__annotations__", "__dict__",
    "__weakref__", "__slots__", "__firstlineno__", "__static_attributes__",
})

# Protocols a forward uses through ``self`` itself rather than ``self.<name>``.
_PROTOCOLS = frozenset({"__iter__", "__getitem__", "__len__", "__contains__", "__reversed__", "__bool__"})


def _class_only_names(module: torch.nn.Module) -> set[str]:
    """Names the module's classes below nn.Module define (methods, properties, class
    attributes), which a bare nn.Module holding the instance's __dict__ lacks."""
    names: set[str] = set()
    for klass in type(module).__mro__:
        if klass is torch.nn.Module:
            break
        names.update(klass.__dict__)
    state = set(vars(module)) | set(module._parameters) | set(module._buffers) | set(module._modules)
    return names - _CLASS_BOOKKEEPING - state


def class_attribute_in_forward(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The root's forward uses what only its class provides: ``self.<name>`` for a method,
    property or class attribute, ``self`` itself where the class defines the protocol
    (iterating a Sequential-like module, indexing it, taking its length), or
    ``super(Class, self)``, which requires self to be an instance of the class."""
    tree = _root_syntax(built)
    if tree is None or not isinstance(tree, ast.Module) or not tree.body:
        return False
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef) or not definition.args.args:
        return False
    me = definition.args.args[0].arg
    own = _class_only_names(built.module)
    bases = set()
    for found in ast.walk(definition):
        if isinstance(found, ast.Call) and isinstance(found.func, ast.Name) and found.func.id == "super":
            if found.args:
                return True
        if isinstance(found, ast.Attribute) and isinstance(found.value, ast.Name) and found.value.id == me:
            bases.add(id(found.value))
            if found.attr in own:
                return True
    if not own & _PROTOCOLS:
        return False
    # ``self`` used other than as the base of an attribute: iterated, indexed, measured
    return any(
        isinstance(found, ast.Name) and found.id == me and id(found) not in bases
        for found in ast.walk(definition)
    )


def closure_in_forward(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The root's forward closes over variables of an enclosing function."""
    fn = _root_forward(built)
    return fn is not None and bool(set(fn.__code__.co_freevars) - {"__class__"})


def zero_argument_super_in_forward(graph_module: torch.fx.GraphModule, built: Built,
                                   params: dict[str, Any]) -> bool:
    """The root's forward calls zero-argument ``super()`` (or reads ``__class__``), which
    needs the class's ``__class__`` cell; ``super(Class, self)`` does not."""
    tree = _root_syntax(built)
    return tree is not None and any(
        (isinstance(found, ast.Call) and isinstance(found.func, ast.Name) and found.func.id == "super"
         and not found.args and not found.keywords)
        or (isinstance(found, ast.Name) and found.id == "__class__")
        for found in ast.walk(tree)
    )


def forward_named_as_a_global(graph_module: torch.fx.GraphModule, built: Built, params: dict[str, Any]) -> bool:
    """The root's forward is a function whose name is already a global of its module (a
    module-level function assigned as forward, say)."""
    fn = _root_forward(built)
    return fn is not None and fn.__name__ in fn.__globals__


def postponed_annotations_in_forward(graph_module: torch.fx.GraphModule, built: Built,
                                     params: dict[str, Any]) -> bool:
    """The root's forward is annotated and was compiled under ``from __future__ import
    annotations`` (its annotations are strings until something evaluates them)."""
    fn = _root_forward(built)
    # The flag is in the code object whichever way it got there: the defining module's own
    # future import, or compile() inheriting it from the code that called it.
    return (
        fn is not None
        and bool(fn.__annotations__)
        and bool(fn.__code__.co_flags & __future__.annotations.compiler_flag)
    )

