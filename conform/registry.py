"""The transform registry: one row per transform, read by everything else.

Adding a transform is adding a row to :data:`TRANSFORMS`, not editing the engine. A row says

* ``target``: ``"basename:attr"``, resolved against either implementation
  (:class:`conform.implementations.Implementation`), e.g. ``"split_module:split_module"`` is
  ``torch.fx.passes.split_module.split_module`` upstream and
  ``reference.split_module.split_module`` in the reference;
* ``convention``: how to call it, a key of :data:`conform.adapters.CONVENTIONS`
  (``traces``, ``graph_module``, ``pass_base``, ``transformer``, ``interpreter``,
  ``split``), or ``custom``
  with ``driver`` naming a ``"module:function"`` with the driver signature
  ``(impl, row, subject, params) -> Applied``;
* ``params``: ``"module:function"`` of a parameter strategy factory
  ``(graph_module) -> SearchStrategy[dict]`` whose dicts are JSON-able (they are recorded
  and replayed); None means no parameters;
* ``fingerprint``: ``"module:function"`` taking an :class:`~conform.adapters.Applied` and
  returning a JSON-able structural summary; reference and upstream must produce equal ones;
* ``oracles``: which comparisons apply (``eager``, ``upstream``, ``device``, and the
  metamorphic ``retrace``, ``roundtrip``, ``idempotent`` and ``compose`` of
  :mod:`conform.oracles.metamorphic`); :data:`DEFAULT_ORACLES` unless the row says otherwise;
* ``compose``: :class:`Compose` pairs, the transforms the ``compose`` oracle applies to this
  row's output;
* ``covers``: the ``reference/`` module basenames this row exercises (a test checks that
  every reference module is covered by some row);
* ``focus``: ``"module:attr"`` of a :class:`generators.focus.focus.Focus`, what the transform
  is sensitive to (op-kind weights and patterns that plant whole constructs); random cases
  for the row are drawn from it (:func:`conform.strategies.cases`). None draws from the
  general vocabulary.

A row whose ``target`` names a module of its own (``"mypkg.passes:fold_constants"``, any
importable module that is not one of the reimplemented basenames) is *one-sided*: a user's
pass with no reference twin. Its single side, ``user``, is checked against eager (and the
device oracle); the upstream oracle has nothing to compare it with. ``conform run
--transform MODULE:ATTR`` builds such a row on the fly (:mod:`conform.user_pass`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from conform.adapters import CONVENTIONS, Applied
from conform.errors import unknown
from conform.implementations import USER, Implementation, is_reimplemented


class Oracle(StrEnum):
    EAGER = "eager"  # the transformed module computes what the eager module computes
    UPSTREAM = "upstream"  # reference and upstream agree: outputs, fingerprint, errors
    DEVICE = "device"  # the reference's transformed module agrees on CPU and CUDA
    RETRACE = "retrace"  # the transformed module traces again and computes the same
    ROUNDTRIP = "roundtrip"  # the transformed GraphModules' code is what their graphs give
    IDEMPOTENT = "idempotent"  # applying the transform to its output changes nothing
    COMPOSE = "compose"  # the row's Compose transforms applied to its output compute the same


ALL_ORACLES = frozenset(Oracle)
#: The oracles of a row that names none: every one that holds for any transform. Idempotence
#: is a contract of some transforms only, and composition needs the pairs to try.
DEFAULT_ORACLES = frozenset({Oracle.EAGER, Oracle.UPSTREAM, Oracle.DEVICE, Oracle.RETRACE, Oracle.ROUNDTRIP})
#: Rows whose transform is a normal form (normalizing, folding, removing, merging): a second
#: application finds nothing left to do, so the graph and its outputs stay as they are.
#: Not split_module (a second split nests the partitions), optimize_for_inference (its layout
#: conversions wrap the converted modules again), the tracers (their input is an eager
#: module, not a graph) or the analyses (they leave the graph as it is).
IDEMPOTENT = DEFAULT_ORACLES | {Oracle.IDEMPOTENT}
#: Analyses annotate the traced case in place and return no module of their own: there is
#: nothing transformed to re-trace, and annotating node types without recompiling is theirs
#: to do.
ANALYSIS = frozenset({Oracle.EAGER, Oracle.UPSTREAM, Oracle.DEVICE})


def load(path: str) -> Any:
    """Import ``"package.module:attr.path"``."""
    module_name, _, attrs = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attr in attrs.split(".") if attrs else ():
        obj = getattr(obj, attr)
    return obj


@dataclasses.dataclass(frozen=True)
class Compose:
    """A second transform for the ``compose`` oracle: the row named ``then`` applied to the
    first row's output, with the parameters ``params`` (``"module:function"``,
    ``(graph_module) -> dict``) computes of that output's graph; ``{}`` when None.

    ``every`` bounds the cost of an expensive second transform: the pair is tried on one case
    in ``every``, chosen by the case's key (so a replay of the case tries it again)."""

    then: str
    params: str | None = None
    every: int = 1

    def tried_on(self, case_key: str) -> bool:
        return self.every <= 1 or int(case_key, 16) % self.every == 0


@dataclasses.dataclass(frozen=True)
class TransformSpec:
    name: str
    target: str
    convention: str
    description: str
    params: str | None = None
    fingerprint: str | None = None
    driver: str | None = None
    oracles: frozenset[Oracle] = DEFAULT_ORACLES
    compose: tuple[Compose, ...] = ()
    covers: tuple[str, ...] = ()
    timeout_s: float = 60.0
    focus: str | None = None

    @property
    def sides(self) -> tuple[str, ...]:
        """The implementations the engine applies, the one under test first: ``reference``
        (and ``upstream`` when the upstream oracle applies) for a reimplemented module, the
        single ``user`` side for a one-sided row."""
        if not self.one_sided:
            return ("reference", "upstream") if Oracle.UPSTREAM in self.oracles else ("reference",)
        return (USER,)

    @property
    def one_sided(self) -> bool:
        """Whether the target is a user's pass rather than a reimplemented module."""
        return not is_reimplemented(self.target)

    @property
    def modules(self) -> tuple[str, ...]:
        """Reference module basenames this row exercises (for a one-sided row, only its
        ``covers``: its own module has no reference counterpart)."""
        if self.one_sided:
            return tuple(dict.fromkeys(self.covers))
        return tuple(dict.fromkeys((self.target.partition(":")[0], *self.covers)))

    def load_driver(self) -> Callable[..., Applied]:
        if self.convention == "custom":
            if not self.driver:
                raise ValueError(f"row {self.name!r} is custom but names no driver")
            return load(self.driver)
        return CONVENTIONS[self.convention]

    def load(self, impl: Implementation | str) -> Callable[..., Applied]:
        """One uniform callable ``(subject, params) -> Applied`` for an implementation."""
        impl = impl if isinstance(impl, Implementation) else Implementation(impl)
        driver = self.load_driver()
        row = self

        def apply(subject: Any, params: dict[str, Any]) -> Applied:
            return driver(impl, row, subject, params)

        apply.__name__ = f"{self.name}[{impl.name}]"
        return apply

    def load_params(self) -> Callable[..., Any] | None:
        return load(self.params) if self.params else None

    def load_focus(self) -> Any:
        """The row's :class:`~generators.focus.focus.Focus`, or None."""
        return load(self.focus) if self.focus else None

    def load_fingerprint(self) -> Callable[[Applied], Any] | None:
        return load(self.fingerprint) if self.fingerprint else None


TRANSFORMS: tuple[TransformSpec, ...] = (
    TransformSpec(
        name="split_module",
        focus="generators.focus.split:SPLIT_MODULE",
        target="split_module:split_module",
        convention="custom",
        driver="conform.drivers.split:drive",
        description="split_module with a partition map drawn per case (monotone, random, cyclic)",
        params="generators.params.split:split_params",
        fingerprint="conform.fingerprints.split:fingerprint",
    ),
    TransformSpec(
        name="shape_prop",
        target="shape_prop:ShapeProp",
        convention="interpreter",
        description="ShapeProp(gm).propagate(*inputs): tensor_meta on every node",
        fingerprint="conform.fingerprints.shapes:fingerprint",
        oracles=ANALYSIS,
    ),
    TransformSpec(
        name="graph_manipulation",
        target="graph_manipulation:get_size_of_all_nodes",
        convention="custom",
        driver="conform.drivers.graph_utils:drive_sizes",
        description="get_size_of_all_nodes(gm, inputs): size_bytes (output, total) of every node",
        fingerprint="conform.fingerprints.graph_utils:sizes",
        covers=("shape_prop",),
        oracles=ANALYSIS,
    ),
    TransformSpec(
        name="param_fetch",
        target="param_fetch:lift_lowering_attrs_to_nodes",
        convention="custom",
        driver="conform.drivers.graph_utils:drive_lowering_attrs",
        description="lift_lowering_attrs_to_nodes(gm): attrs_for_lowering on leaf-module calls",
        fingerprint="conform.fingerprints.graph_utils:lowering_attrs",
        oracles=ANALYSIS,
    ),
    TransformSpec(
        name="annotate_getitem_nodes",
        focus="generators.focus.graph_utils:ANNOTATE_GETITEM",
        target="annotate_getitem_nodes:annotate_getitem_nodes",
        convention="custom",
        driver="conform.drivers.graph_utils:drive_getitem_types",
        description="annotate_getitem_nodes(gm.graph): node.type of getitem nodes from their sequence's type",
        fingerprint="conform.fingerprints.graph_utils:getitem_types",
        oracles=ANALYSIS,
    ),
    TransformSpec(
        name="normalize_args",
        focus="generators.focus.normalize:NORMALIZE_ARGS",
        target="normalize:NormalizeArgs",
        convention="transformer",
        description="NormalizeArgs(gm).transform(): call sites matched to their signatures, defaults filled",
        params="generators.params.normalize:normalize_args_params",
        fingerprint="conform.fingerprints.normalize:fingerprint",
        covers=("operator_schemas",),
        oracles=IDEMPOTENT | {Oracle.COMPOSE},
        compose=(Compose("split_module", "conform.oracles.metamorphic:halves", every=4),),
    ),
    TransformSpec(
        name="normalize_args_typed",
        focus="generators.focus.normalize:NORMALIZE_ARGS_TYPED",
        target="normalize:NormalizeArgs",
        convention="custom",
        driver="conform.drivers.normalize:drive_typed",
        description="ShapeProp, then NormalizeArgs: overloads resolved from the recorded types",
        params="generators.params.normalize:normalize_args_params",
        fingerprint="conform.fingerprints.normalize:fingerprint",
        covers=("operator_schemas",),
    ),
    TransformSpec(
        name="normalize_operators",
        focus="generators.focus.normalize:NORMALIZE_OPERATORS",
        target="normalize:NormalizeOperators",
        convention="transformer",
        description="NormalizeOperators(gm).transform(): binary torch ops spelled as operator.*",
        fingerprint="conform.fingerprints.normalize:fingerprint",
        covers=("schema_type_annotation",),
        oracles=IDEMPOTENT,
    ),
    TransformSpec(
        name="annotate_types",
        focus="generators.focus.normalize:ANNOTATE_TYPES",
        target="schema_type_annotation:AnnotateTypesWithSchema",
        convention="transformer",
        description="AnnotateTypesWithSchema(gm).transform(): node types from callee signatures",
        params="generators.params.normalize:annotate_types_params",
        fingerprint="conform.fingerprints.normalize:fingerprint",
    ),
    TransformSpec(
        name="rewrite",
        focus="generators.focus.normalize:REWRITE",
        target="rewriter:RewritingTracer",
        convention="custom",
        driver="conform.drivers.normalize:drive_rewrite",
        description="RewritingTracer().trace(module): asserts become torch._assert nodes",
        fingerprint="conform.fingerprints.normalize:traced_graph",
    ),
    TransformSpec(
        name="meta_trace",
        focus="generators.focus.normalize:META_TRACE",
        target="meta_tracer:MetaTracer",
        convention="custom",
        driver="conform.drivers.normalize:drive_meta_trace",
        description="MetaTracer().trace(module, meta_args): tracing with meta-tensor shapes",
    ),
    TransformSpec(
        name="fuse",
        focus="generators.focus.optimization:FUSE",
        target="optimization:fuse",
        convention="traces",
        description="fuse(module, inplace): Conv/Linear + BatchNorm folding in eval mode",
        params="generators.params.optimization:fuse_params",
        fingerprint="conform.fingerprints.optimization:modules",
        oracles=IDEMPOTENT | {Oracle.COMPOSE},
        compose=(Compose("remove_dropout", every=4),),
    ),
    TransformSpec(
        name="remove_dropout",
        focus="generators.focus.optimization:REMOVE_DROPOUT",
        target="optimization:remove_dropout",
        convention="traces",
        description="remove_dropout(module): nn.Dropout calls removed",
        fingerprint="conform.fingerprints.optimization:modules",
        oracles=IDEMPOTENT,
    ),
    TransformSpec(
        name="optimize_for_inference",
        focus="generators.focus.optimization:OPTIMIZE_FOR_INFERENCE",
        target="optimization:optimize_for_inference",
        convention="custom",
        driver="conform.drivers.optimization:drive_optimize_for_inference",
        description="optimize_for_inference(module, pass_config): fusion, dropout removal, MKLDNN layout (CPU)",
        params="generators.params.optimization:optimize_params",
        fingerprint="conform.fingerprints.optimization:modules",
        oracles=frozenset({Oracle.EAGER, Oracle.UPSTREAM, Oracle.RETRACE, Oracle.ROUNDTRIP}),
    ),
    TransformSpec(
        name="merge_matmul",
        focus="generators.focus.optimization:MERGE_MATMUL",
        target="merge_matmul:merge_matmul",
        convention="traces",
        description="merge_matmul(module): torch.matmul calls sharing a right operand merged",
        fingerprint="conform.fingerprints.optimization:merged_matmuls",
        oracles=IDEMPOTENT,
    ),
    TransformSpec(
        name="validator",
        focus="generators.focus.validator:VALIDATOR",
        target="validator:TranslationValidator",
        convention="custom",
        driver="conform.drivers.optimization:drive_validator",
        description="TranslationValidator + SympyToZ3 on an expression over the case's input sizes",
        params="generators.params.optimization:validator_params",
        fingerprint="conform.fingerprints.optimization:validation",
        oracles=frozenset({Oracle.UPSTREAM}),
    ),
    TransformSpec(
        name="partition",
        focus="generators.focus.split:PARTITION",
        target="accelerator_partitioner:Partitioner",
        convention="custom",
        driver="conform.drivers.partition:drive",
        description="Partitioner().partition_graph(gm, module, config): every mode, devices and latencies drawn per case",
        params="generators.params.partition:partition_params",
        fingerprint="conform.fingerprints.partition:fingerprint",
        covers=("partitioner_utils",),
    ),
)


_CACHE: dict[str, Any] = {}


def transforms() -> dict[str, TransformSpec]:
    """Every registered row by name: the built-in :data:`TRANSFORMS` and the rows plugins
    add (:mod:`conform.plugins`)."""
    from conform import plugins

    stamp = (plugins.generation(), id(TRANSFORMS))
    if _CACHE.get("stamp") != stamp:
        _CACHE["rows"] = {row.name: row for row in plugins.collect("conform_transforms")}
        _CACHE["stamp"] = stamp
    return _CACHE["rows"]


def get(name: str) -> TransformSpec:
    rows = transforms()
    if name not in rows:
        raise unknown("transform", name, rows)
    return rows[name]


def select(names: list[str] | None) -> list[TransformSpec]:
    """Rows named by ``names`` (all rows when empty), in registry order; unknown names raise
    a :class:`~conform.errors.UsageError` listing the valid ones."""
    if not names:
        return list(transforms().values())
    chosen = [get(n) for n in names]
    return list(dict.fromkeys(chosen))
