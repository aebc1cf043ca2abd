"""Directed generation: every pattern plants its construct, every focused draw builds,
traces and validates, shrinking still simplifies focused draws, and swarm subsets vary."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from conform.case import Case
from conform.engine import Prepared, prepare, trace
from conform.registry import TRANSFORMS, get
from conform.strategies import cases, prepared_for
from generators import spec as spec_mod
from generators.focus.draw import PATTERN_CATEGORY, features, focused_specs, swarm
from generators.focus.focus import Focus
from generators.random_modules import Config, genomes, realize
from generators.vocab import VOCABULARY
from tests.generators._normalize_constructs import CONSTRUCTS as NORMALIZE_CONSTRUCTS

SETTINGS = settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
FOCUSED = [row.name for row in TRANSFORMS if row.focus]
PATTERNS = sorted(name for name, kind in VOCABULARY.items() if kind.category == PATTERN_CATEGORY)


def _modules(gm: torch.fx.GraphModule) -> dict[str, nn.Module]:
    return dict(gm.named_modules())


def _calls(gm: torch.fx.GraphModule, kinds: tuple[type, ...]) -> list[torch.fx.Node]:
    mods = _modules(gm)
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(mods[n.target], kinds)]


def _norm_after_layer(gm: torch.fx.GraphModule) -> bool:
    layers = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    mods = _modules(gm)
    return any(isinstance(n.args[0], torch.fx.Node) and n.args[0].op == "call_module"
               and isinstance(mods[n.args[0].target], layers)
               for n in _calls(gm, (nn.modules.batchnorm._BatchNorm,)))


def _functional_norm_after_conv(gm: torch.fx.GraphModule) -> bool:
    return any(n.target is F.batch_norm and n.args[0].op == "call_module" for n in gm.graph.nodes)


def _keyword_dropout(gm: torch.fx.GraphModule) -> bool:
    return any("input" in n.kwargs and isinstance(_modules(gm)[n.target], nn.Dropout)
               for n in gm.graph.nodes if n.op == "call_module")


def _binary_of_two_nodes_after_conv(gm: torch.fx.GraphModule) -> bool:
    convs = _calls(gm, (nn.Conv2d,))
    return bool(convs) and any(n.target in (operator.add, operator.mul) and all(isinstance(a, torch.fx.Node) for a in n.args)
                               for n in gm.graph.nodes)


def _adaptive_pool(gm: torch.fx.GraphModule) -> bool:
    return bool(_calls(gm, (nn.AdaptiveAvgPool2d,))) or any(n.target is F.adaptive_avg_pool2d for n in gm.graph.nodes)


def _full_reduction_into_relu(gm: torch.fx.GraphModule) -> bool:
    relus = (torch.relu, F.relu, "relu")
    return any(n.target in relus and isinstance(n.args[0], torch.fx.Node) and len(n.args[0].args) == 1
               and n.args[0].target in (torch.min, torch.max, torch.mean, torch.sum, torch.amax, "max", "sum")
               for n in gm.graph.nodes)


def _number_operand(gm: torch.fx.GraphModule) -> bool:
    return bool(_calls(gm, (nn.Conv2d,))) and any(
        n.target in (operator.add, operator.mul) and any(isinstance(a, float) for a in n.args) for n in gm.graph.nodes)


def _shared_right_operand(gm: torch.fx.GraphModule) -> bool:
    rights = [n.kwargs.get("other", n.args[1] if len(n.args) > 1 else None) for n in gm.graph.nodes
              if n.target in (torch.matmul, operator.matmul)]
    return any(rights.count(r) >= 2 for r in rights if r is not None)


def _checked_child(gm: torch.fx.GraphModule) -> bool:
    return any(type(m).__name__ in ("CheckedChild", "StateCheckedChild") for m in gm.modules()) or any(
        n.op == "call_function" and n.target is operator.mul and n.args[1] == 2.0 for n in gm.graph.nodes)


def _typed_getitem(gm: torch.fx.GraphModule) -> bool:
    return any(n.target is operator.getitem and n.args[0].type is not None for n in gm.graph.nodes)


def _inplace_write(gm: torch.fx.GraphModule) -> bool:
    def name(n: torch.fx.Node) -> str:
        return n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")

    return any((name(n).endswith("_") and not name(n).startswith("_")) or n.kwargs.get("inplace")
               for n in gm.graph.nodes if n.op in ("call_function", "call_method"))


def _grad_region(gm: torch.fx.GraphModule) -> bool:
    flags = [n.args[0] for n in gm.graph.nodes if n.target is torch._C._set_grad_enabled]
    return bool(flags) and flags[::2] == [False] * (len(flags) // 2) and flags[1::2] == [True] * (len(flags) // 2)


def _returns_attribute(gm: torch.fx.GraphModule) -> bool:
    output = next(n for n in gm.graph.nodes if n.op == "output")
    return any(n.op == "get_attr" and len(n.users) == 1 for n in output.all_input_nodes)


def _colliding(gm: torch.fx.GraphModule) -> bool:
    targets = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    flat = [t.replace(".", "_") for t in targets]
    return len(set(targets)) > len(set(flat))


#: pattern -> what its construct looks like in the traced graph
CONSTRUCTS: dict[str, Callable[[torch.fx.GraphModule], bool]] = {
    "fold_pair": _norm_after_layer,
    "linear_norm": _norm_after_layer,
    "linear_norm_other_channels": _norm_after_layer,
    "conv_functional_norm": _functional_norm_after_conv,
    "keyword_dropout": _keyword_dropout,
    "channel_gate": _binary_of_two_nodes_after_conv,
    "uneven_pool": _adaptive_pool,
    "reduced_in_region": _full_reduction_into_relu,
    "number_in_region": _number_operand,
    "matmul_group": _shared_right_operand,
    "keyword_matmul": lambda gm: _shared_right_operand(gm) and any("other" in n.kwargs for n in gm.graph.nodes),
    "matmul_update_between": lambda gm: _shared_right_operand(gm) and _inplace_write(gm),
    "norm_without_affine": lambda gm: any(not m.affine for m in gm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)),
    "checked_child": _checked_child,
    "typed_getitem": _typed_getitem,
    "read_then_write": _inplace_write,
    "grad_region": _grad_region,
    "returned_parameter": _returns_attribute,
    "colliding_targets": _colliding,
    "embedding_lookup": lambda gm: bool(_calls(gm, (nn.Embedding, nn.EmbeddingBag))),
    "symbolic_size": lambda gm: any(isinstance(n.meta.get("example_value"), torch.SymInt) and n.target == "size"
                                    for n in gm.graph.nodes),
    "embedding_tables": lambda gm: bool(_calls(gm, (nn.Embedding, nn.EmbeddingBag))) and all(
        n.op == "call_module" for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")),
}
CONSTRUCTS.update(NORMALIZE_CONSTRUCTS)

#: patterns whose construct is in the forward's source rather than the graph
SOURCE_CONSTRUCTS = {
    "private_attribute": ("self.__",),
    "annotated_local": (": torch.Tensor",),
    "super_call": ("super(GeneratedModule, self)", "super()."),
    "enclosing_read": ("def _enclosing_GeneratedModule(",),
    "global_forward": ("    forward = forward\n",),
}


def test_every_pattern_has_a_construct_check() -> None:
    assert set(PATTERNS) == set(CONSTRUCTS) | set(SOURCE_CONSTRUCTS)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_plants_its_construct(pattern: str) -> None:
    config = Config(table=((pattern, 1.0),), max_nodes=60, dtypes=("float32",), training=False)
    planted = []

    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=(Phase.generate,))
    @given(genomes(config))
    def check(genome: dict) -> None:
        spec = realize(genome, config)
        spec_mod.validate(spec)
        if not spec["nodes"]:
            return  # every gene failed to plant on its shapes and rolled back: nothing planted
        built = spec_mod.build(spec, 0)
        gm = trace(built)
        gm.graph.lint()
        if pattern in SOURCE_CONSTRUCTS:
            source = spec_mod.module_source(spec)
            assert any(text in source for text in SOURCE_CONSTRUCTS[pattern]), source
        else:
            assert CONSTRUCTS[pattern](gm), gm.code
        planted.append(spec)

    check()
    assert len(planted) >= 5, f"{pattern} planted in only {len(planted)} of 15 draws"


@pytest.mark.parametrize("transform", FOCUSED)
def test_focused_draws_build_trace_and_validate(transform: str) -> None:
    focus = get(transform).load_focus()

    @SETTINGS
    @given(focused_specs(focus), st.integers(0, 2**16))
    def check(spec: dict, seed: int) -> None:
        spec_mod.validate(spec)
        assert spec_mod.json.loads(spec_mod.json.dumps(spec)) == spec
        prepared = prepare(Case("random", spec, seed))
        assert isinstance(prepared, Prepared), prepared.message
        prepared.graph_module.graph.lint()

    check()


def test_shrinking_a_focused_draw_gives_the_construct_alone() -> None:
    focus = get("fuse").load_focus()

    def has_fold(spec: dict) -> bool:
        ops = {n["id"]: n["op"] for n in spec["nodes"]}
        return any(n["op"] == "batch_norm" and ops.get(n["in"][0], "").startswith("conv") for n in spec["nodes"])

    smallest = find(focused_specs(focus), has_fold, settings=settings(max_examples=300, database=None, deadline=None))
    # one planted construct is left: the pair, at most with its variant's second use
    ops = [n["op"] for n in smallest["nodes"]]
    assert ops[:2] == ["conv1d", "batch_norm"] and len(ops) <= 4, ops
    assert all(math.prod(entry["shape"]) <= 12 for entry in smallest["inputs"])


def test_swarm_subsets_vary_and_keep_a_pattern() -> None:
    focus = get("optimize_for_inference").load_focus()
    table = features(focus)
    subsets = set()

    @settings(max_examples=40, database=None, deadline=None)
    @given(st.lists(st.booleans(), min_size=len(table), max_size=len(table)))
    def check(omit: list[bool]) -> None:
        kept = swarm(focus, omit)
        assert any(name in focus.patterns for name, _ in kept)
        assert set(kept) <= set(table)
        subsets.add(kept)

    check()
    assert len(subsets) >= 10
    # leaving everything out keeps the patterns
    assert swarm(focus, [True] * len(table)) == tuple(row for row in table if row[0] in focus.patterns)


def test_focused_draws_mix_focus_and_general_vocabulary() -> None:
    focus = Focus(weights={"relu": 1.0}, patterns={"matmul_group": 1.0}, share=0.5)
    kinds: list[set[str]] = []

    @settings(max_examples=60, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(focused_specs(focus))
    def check(spec: dict) -> None:
        kinds.append({n["op"] for n in spec["nodes"]})

    check()
    focused = {"relu", "matmul", "param", "tanh", "inplace"}
    assert any(k and k <= focused for k in kinds)
    assert any(k - focused for k in kinds)


def test_bad_focus_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a pattern kind"):
        focused_specs(Focus(weights={}, patterns={"relu": 1.0}))
    with pytest.raises(ValueError, match="share"):
        Focus(weights={"relu": 1.0}, patterns={}, share=1.5)


def test_cases_draws_prepared_cases_and_params() -> None:
    drawn = []

    @settings(max_examples=5, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases("fuse"))
    def check(pair: tuple) -> None:
        case, params = pair
        assert case.source == "random" and set(params) == {"inplace"}
        prepared = prepared_for(case)
        assert isinstance(prepared, Prepared)
        assert prepared_for(case) is prepared  # cached: the check reuses the prepared case
        drawn.append(case)

    check()
    assert drawn


def test_cases_rejects_an_unknown_source() -> None:
    from conform.errors import UsageError

    with pytest.raises(UsageError, match="unknown source 'nope'"):
        cases("fuse", sources=["nope"])


def test_split_params_on_a_region_graph_draw_affixes_and_negative_ids() -> None:
    from generators.params.split import has_regions, split_params

    config = Config(table=(("grad_region", 1.0),), max_nodes=20, dtypes=("float32",), training=False)
    spec = find(genomes(config), lambda g: bool(realize(g, config)["nodes"]), settings=settings(database=None))
    gm = trace(spec_mod.build(realize(spec, config), 0))
    assert has_regions(gm)
    seen = {"affix": False, "negative": False}

    @settings(max_examples=60, database=None, deadline=None)
    @given(split_params(gm))
    def check(params: dict) -> None:
        seen["affix"] |= params.get("partition_affix") == "pp"
        seen["negative"] |= min(params["partition"].values(), default=0) < -1

    check()
    assert seen == {"affix": True, "negative": True}


def test_standalone_script_of_a_leaf_child_traces(tmp_path) -> None:
    import subprocess
    import sys

    config = Config(table=(("checked_child", 1.0),), max_nodes=20, dtypes=("float32",), training=False)
    genome = {"dtype": "float32", "training": False, "inputs": [(1, [1, 2, 0, 0])],
              "genes": [("checked_child", [0] * 8)], "output": 0}
    spec = realize(genome, config)
    assert spec["nodes"][0]["attrs"]["cls"] == "CheckedChild"
    built = spec_mod.build(spec, 0)
    assert [cls.__name__ for cls in built.leaf_modules] == ["CheckedChild"]
    script = tmp_path / "case.py"
    script.write_text(spec_mod.standalone_source(spec, 0))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "self.child" in done.stdout  # the child is called as a leaf module


def test_reach_counts_the_known_entries_focused_cases_reach() -> None:
    from bench.reach import reach

    result = reach(get("remove_dropout"), seconds=4.0)
    assert result["cases"] > 0
    assert result["registered"] == ["remove-dropout-keyword-input"]
    assert set(result["reached"]) <= set(result["registered"])
    assert sum(result["verdicts"].values()) >= result["cases"]


@pytest.mark.parametrize(("pattern", "entry"), [("enclosing_read", "rewrite-closure-variables"),
                                                ("global_forward", "rewrite-function-name-already-global")])
def test_a_forward_construct_pattern_reaches_its_rewrite_entry(pattern: str, entry: str) -> None:
    from conform.engine import check

    config = Config(table=((pattern, 1.0), ("relu", 1.0)), max_nodes=12, dtypes=("float32",), training=False)
    reached = []

    @settings(max_examples=6, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
    @given(genomes(config))
    def search(genome: dict) -> None:
        spec = realize(genome, config)
        if any(node["op"] == pattern for node in spec["nodes"]):
            reached.extend(o.known_id for o in check(Case("random", spec, 0), "rewrite"))

    search()
    assert entry in reached
