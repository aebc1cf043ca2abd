"""Planted bugs in ``reference/``: each module here, loaded as a plugin
(``conform run --plugin plants.NAME``, with ``tests/selfcheck`` on ``PYTHONPATH``), replaces
one function, method or constant of one reference module with a subtly wrong version, in the
process that loads it. Plugins load in the CLI process and in every worker, so a whole
campaign runs against the broken reference while upstream stays as it is.

:data:`PLANTS` says, per plant, what it breaks and which campaign should catch it; the plant
modules themselves only patch, so reading this catalogue plants nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: What must be on ``sys.path`` for ``plants.NAME`` to import.
SEARCH_PATH = HERE.parent


@dataclasses.dataclass(frozen=True)
class Plant:
    """One planted bug.

    Args:
        name: the plant module's basename (``plants.<name>``).
        module: the ``reference/`` module basename it breaks.
        attr: the dotted attribute of that module it replaces.
        transform: the registry row whose campaign should find it.
        description: what is wrong, in one line.
        options: extra ``conform run`` options the campaign needs (a source, op kinds).
        max_cases: the campaign's ``--max-cases`` (None: :data:`MAX_CASES`).
    """

    name: str
    module: str
    attr: str
    transform: str
    description: str
    options: tuple[str, ...] = ()
    max_cases: int | None = None

    @property
    def plugin(self) -> str:
        return f"plants.{self.name}"


def replace(module: str, attr: str, wrong: Any) -> Any:
    """Set ``reference.<module>.<attr>`` (``attr`` may be ``Class.method``) to ``wrong`` and
    return what was there."""
    owner: Any = importlib.import_module(f"reference.{module}")
    *path, last = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = owner.__dict__[last] if isinstance(owner, type) else getattr(owner, last)
    setattr(owner, last, wrong)
    return original


def _ops(*kinds: str) -> tuple[str, ...]:
    return tuple(option for kind in kinds for option in ("--include-op", kind))


PLANTS: dict[str, Plant] = {
    plant.name: plant
    for plant in (
        Plant("operators_ignore_alpha", "normalize", "NormalizeOperators._magic_spelling",
              "normalize_operators",
              "torch.add/sub with alpha=2 respelled a + b: neutral keywords checked by name, not value",
              _ops("add", "sub", "relu")),
        Plant("keyword_only_defaults", "operator_schemas", "_normalize_against", "normalize_args",
              "normalized calls leave out the defaults of keyword-only parameters (F.gelu's approximate)",
              _ops("gelu", "add", "softmax")),
        Plant("get_attrs_always_typed", "schema_type_annotation", "AnnotateTypesWithSchema.get_attr",
              "annotate_types", "get_attr nodes are typed even with annotate_get_attrs=False",
              _ops("linear_fn", "buffer", "constant", "add")),
        Plant("channels_last_first", "shape_prop", "_MEMORY_FORMATS", "shape_prop",
              "memory formats tried channels-last first: a tensor contiguous both ways is channels-last",
              _ops("conv2d", "adaptive_pool", "relu")),
        Plant("integer_width", "graph_manipulation", "_element_size", "graph_manipulation",
              "element sizes from the float table, every other dtype (int64, bool) counted as 4 bytes",
              _ops("argmax", "gt", "add")),
        Plant("conv_padding_mode", "param_fetch", "module_fetch_book", "param_fetch",
              "Conv2d's lowering attributes leave out padding_mode",
              _ops("conv2d", "relu")),
        Plant("bn_mean_unscaled", "optimization", "_fold", "fuse",
              "conv/Linear + batch-norm folding subtracts the running mean unscaled",
              _ops("conv2d", "batch_norm", "linear")),
        Plant("merged_order_kept", "merge_matmul", "_restore_topological_order", "merge_matmul",
              "nodes are not reordered after merging: a product is read before the merged call",
              _ops("matmul", "relu", "add"), max_cases=120),
        Plant("latency_adds_up", "partitioner_utils", "_longest_path", "partition",
              "critical-path latency adds memory and compute latency instead of taking the larger",
              _ops("linear", "relu", "add")),
        Plant("dag_outputs", "accelerator_partitioner", "Partitioner.dump_dag", "partition",
              "a submodule call with one user lists that user as its output (>= 1 for > 1)",
              _ops("linear", "relu", "add")),
        Plant("rewritten_defaults", "rewriter", "_recompile", "rewrite",
              "a forward rewritten for its asserts loses its parameters' default values",
              _ops("assert", "default_arg", "add")),
        Plant("embedding_width", "meta_tracer", "embedding_override", "meta_trace",
              "nn.Embedding's metadata takes num_embeddings as its last dimension, not the width",
              _ops("embedding", "assert"), max_cases=120),
        Plant("euclidean_mod", "validator", "_PythonSemantics.mod", "validator",
              "Python's % becomes z3's Euclidean %, wrong for a negative divisor",
              _ops("relu", "add"), max_cases=40),
        Plant("placeholder_default", "split_module", "_Parent.bring_in", "split_module",
              "renamed parent inputs lose their default values",
              _ops("default_arg", "add")),
    )
}


# ---------------------------------------------------------------------------------------------
# Running a plant's campaign
# ---------------------------------------------------------------------------------------------

ROOT = HERE.parents[2]
#: Each campaign stops at whichever comes first: the budget or this many cases. Every plant
#: is found well within it (see bench/planted.py), and a bounded run is reproducible.
MAX_CASES = 25
BUDGET_S = 60


def command(plant: Plant | None, report: Path, *, transform: str | None = None,
            max_cases: int | None = None, budget_s: float = BUDGET_S,
            options: tuple[str, ...] = (), python: str | None = None) -> list[str]:
    """The ``conform run`` command line of ``plant``'s campaign, or of the unplanted control
    campaign of ``transform`` (with ``options``) when ``plant`` is None. ``max_cases``
    defaults to the plant's own bound, else :data:`MAX_CASES`."""
    import sys

    if plant is None and transform is None:
        raise ValueError("a control campaign needs a transform")
    row = plant.transform if plant is not None else transform
    argv = [python or sys.executable, "-m", "conform.cli", "run", "--transform", row,
            "--budget", str(budget_s), "--quiet", "--no-shrink", "--database", "",
            "--device", "cpu", "--seed", "0", "--report", str(report)]
    cases = max_cases or (plant.max_cases if plant is not None else None) or MAX_CASES
    argv += ["--max-cases", str(cases)]
    if plant is not None:
        argv += ["--plugin", plant.plugin, *plant.options]
    return argv + list(options)


def control_options(transform: str) -> tuple[str, ...]:
    """Every op kind the plants of ``transform`` draw from: the unplanted control campaign
    of a transform covers what its plants' campaigns do."""
    kinds: list[str] = []
    for plant in PLANTS.values():
        if plant.transform == transform:
            kinds += [k for k in plant.options[1::2] if k not in kinds]
    return tuple(option for kind in kinds for option in ("--include-op", kind))


def environment() -> dict[str, str]:
    """The process environment a campaign runs in: the repository and the plants importable."""
    import os

    env = dict(os.environ)
    parts = [str(ROOT), str(SEARCH_PATH), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def run(plant: Plant | None, report: Path, *, transform: str | None = None,
        max_cases: int | None = None, budget_s: float = BUDGET_S, options: tuple[str, ...] = (),
        timeout_s: float = 300) -> int:
    """Run the campaign of :func:`command` from the repository root; its exit status."""
    import subprocess

    argv = command(plant, report, transform=transform, max_cases=max_cases, budget_s=budget_s,
                   options=options)
    done = subprocess.run(argv, cwd=ROOT, env=environment(), timeout=timeout_s,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-4000:]}")
    return done.returncode


def blames_reference(outcome: Any) -> bool:
    """Whether a new divergence points at the reference side: the reference's transform
    failed, its module crashed or disagrees with eager, or the two implementations disagree."""
    stage = outcome.stage.value if outcome.stage else None
    symptom = outcome.symptom.value if outcome.symptom else None
    if stage == "transform-reference" or symptom == "impl-divergence":
        return True
    return stage in ("execute", "compare") and (outcome.place or "").startswith("reference")


def findings(report: Path) -> list[Any]:
    """The run's new divergences, earliest first."""
    from conform.store import Store

    with Store.open(report, create=False) as store:
        found = [o for o in store.outcomes() if o.verdict.value == "fail"]
    return sorted(found, key=lambda o: o.notes.get("t", float("inf")))
