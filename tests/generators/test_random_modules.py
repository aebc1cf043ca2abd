"""The random-module source: every draw is a valid, traceable, finite module whose
standalone source rebuilds it; the knobs filter and weight op kinds; shrinking gives small
modules."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from _generator_checks import check_built, exec_source, run, same, tensors, trace
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from generators import spec as spec_mod
from generators.random_modules import Config, RandomSource, modules, realize, vocabulary
from generators.sources import get_source
from generators.vocab import VOCABULARY, kinds_by_category

SETTINGS = settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def test_vocabulary_has_at_least_sixty_kinds() -> None:
    assert len(vocabulary()) >= 60


def test_every_category_is_named_and_non_empty() -> None:
    cats = kinds_by_category()
    assert all(cats.values())
    assert {"unary", "binary", "compare", "reduce", "view", "linalg", "layers", "normalization", "nested"} <= set(cats)


def test_registered_as_random_source() -> None:
    assert isinstance(get_source("random"), RandomSource)
    assert get_source("random").count() is None


def _check_spec(spec: dict, seed: int, max_nodes: int | None = None) -> None:
    json_roundtrip = spec_mod.json.loads(spec_mod.json.dumps(spec))
    assert json_roundtrip == spec
    built = spec_mod.build(spec, seed)
    expected, gm = check_built(built)
    if max_nodes is not None:
        assert len(gm.graph.nodes) <= max_nodes
    if not built.stochastic:
        for t in tensors(expected):
            if t.is_floating_point():
                assert torch.isfinite(t).all(), "a generated module produced NaN or Inf"


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("max_nodes", [12, 60])
def test_draws_build_trace_lint_and_agree(dtype: str, training: bool, max_nodes: int) -> None:
    @SETTINGS
    @given(modules(dtypes=[dtype], training=training, max_nodes=max_nodes), st.integers(0, 2**16))
    def check(spec: dict, seed: int) -> None:
        _check_spec(spec, seed, max_nodes)

    check()


@pytest.mark.parametrize("part", range(4))
def test_large_draws_up_to_two_hundred_nodes(part: int) -> None:
    @settings(SETTINGS, max_examples=4)
    @given(modules(max_nodes=200, weights={"nested": 0.5}), st.integers(0, 2**16))
    def check(spec: dict, seed: int) -> None:
        _check_spec(spec, seed, 200)

    check()


@pytest.mark.parametrize("category", sorted(kinds_by_category()))
def test_each_category_alone(category: str) -> None:
    # include one category (plus what supplies its operands) and draw small modules
    include = [category, "compare"] if category in ("select", "casts") else [category]

    @SETTINGS
    @given(modules(include=include, max_nodes=30), st.integers(0, 2**16))
    def check(spec: dict, seed: int) -> None:
        _check_spec(spec, seed)

    check()


@pytest.mark.parametrize("part", range(3))
def test_standalone_source_rebuilds_the_same_case(part: int) -> None:
    src = RandomSource(max_nodes=40)

    @SETTINGS
    @given(src.specs(), st.integers(0, 2**16))
    def check(spec: dict, seed: int) -> None:
        built = src.build(spec, seed)
        module, args, kwargs = exec_source(src.source_code(spec, seed))
        assert kwargs == built.kwargs
        assert same(args, built.args)
        assert same(module.state_dict(), built.module.state_dict())
        assert module.training == built.module.training
        assert same(run(module, built), run(built.module, built), meta_only=built.stochastic)

    check()


def test_build_is_deterministic_in_seed() -> None:
    spec = realize(_genome(["linear", "matmul", "conv2d", "embedding"]))
    a, b, c = spec_mod.build(spec, 5), spec_mod.build(spec, 5), spec_mod.build(spec, 6)
    assert same(a.args, b.args) and same(a.module.state_dict(), b.module.state_dict())
    assert not same(a.args, c.args)
    assert not same(a.module.state_dict(), c.module.state_dict())


def test_build_leaves_the_global_rng_alone() -> None:
    spec = realize(_genome(["linear"]))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    spec_mod.build(spec, 9)
    assert torch.equal(torch.rand(3), expected)


def _genome(kinds: list[str], ints: int = 3) -> dict:
    return {
        "dtype": "float32",
        "training": False,
        "inputs": [(1, [2, 3, 0, 0])],
        "genes": [(k, [ints] * 8) for k in kinds],
        "output": 0,
    }


@pytest.mark.parametrize("kind", vocabulary())
def test_each_kind_appears_and_runs(kind: str) -> None:
    # every drawable kind shows up in some draw when it is weighted up, and that draw works
    support = {"compare": 20.0} if kind in ("logical", "logical_not") else {}
    found = _search(lambda spec: any(n["op"] == kind for n in spec["nodes"]), weights={kind: 20.0, **support}, max_nodes=40)
    _check_spec(found, 0)


class _Found(Exception):
    pass


def _search(predicate, **knobs) -> dict:
    """The first draw satisfying ``predicate`` (generation only, derandomized: no shrinking)."""
    found: list[dict] = []

    @settings(max_examples=1500, derandomize=True, phases=[Phase.generate], database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(modules(**knobs))
    def scan(spec: dict) -> None:
        if predicate(spec):
            found.append(spec)
            raise _Found

    with contextlib.suppress(_Found):
        scan()
    assert found, "no draw satisfied the predicate"
    return found[0]


def _shrink(predicate, **knobs) -> dict:
    """The draw satisfying ``predicate`` that hypothesis shrinks to."""
    # derandomized: the shrinker's path depends on the first failing draw, and a fixed one
    # makes the bound on the result a reproducible fact rather than a likely one
    return find(
        modules(**knobs),
        predicate,
        settings=settings(max_examples=3000, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)),
    )


def _graph(spec: dict) -> torch.fx.GraphModule:
    return trace(spec_mod.build(spec, 0))


PATTERNS = {
    "submodule called twice": (
        {"layers": 50.0, "nested": 50.0},
        lambda s: any(n["attrs"].get("new") is False for n in s["nodes"]),
    ),
    "module nested in a module": ({"nested": 100.0}, lambda s: any(n["op"] == "block" and n["attrs"]["cls"] == "GatedBlock" for n in s["nodes"])),
    "tuple output": ({}, lambda s: isinstance(s["outputs"], dict) and "tuple" in s["outputs"]),
    "nested output": ({}, lambda s: "dict" in str(s["outputs"]) and "tuple" in str(s["outputs"])),
    "in-place op": ({"inplace": 100.0}, lambda s: any(n["op"] == "inplace" for n in s["nodes"])),
    "trace-time constant": ({"constant": 100.0}, lambda s: any(n["op"] == "constant" for n in s["nodes"])),
    "assert statement": ({"assert": 100.0}, lambda s: any(n["op"] == "assert" and n["attrs"]["style"] == 2 for n in s["nodes"])),
    "dead code": ({"dead_code": 100.0}, lambda s: any(n["op"] == "dead_code" for n in s["nodes"])),
    "default argument": ({"default_arg": 100.0}, lambda s: bool(s["signature"]["default"])),
    "concrete bool argument": ({"default_arg": 100.0}, lambda s: bool(s["signature"]["flag"])),
    "**kwargs": ({"default_arg": 100.0}, lambda s: s["signature"]["varkw"]),
    "matmuls sharing an operand": ({"linalg": 100.0}, lambda s: _shares_right_operand(s)),
    "integer tensors": ({"embedding": 100.0}, lambda s: any(i["dtype"] == "int64" for i in s["inputs"])),
    "comparison with a scalar": ({"compare": 100.0}, lambda s: any(n["op"] in ("gt", "lt", "eq") and "scalar" in n["attrs"] for n in s["nodes"])),
    "unpacked tuple": ({"split": 100.0}, lambda s: any(n["op"] == "split" and n["attrs"]["unpack"] for n in s["nodes"])),
    "functional batch norm": ({"batch_norm_fn": 100.0}, lambda s: any(n["op"] == "batch_norm_fn" for n in s["nodes"])),
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_pattern_is_generated(pattern: str) -> None:
    weights, predicate = PATTERNS[pattern]
    spec = _search(predicate, weights=weights or None, max_nodes=40)
    _check_spec(spec, 0)


def test_trace_time_constant_becomes_a_graph_attribute() -> None:
    spec = _search(lambda s: any(n["op"] == "constant" and n["id"] in str(s["outputs"]) for n in s["nodes"]), weights={"constant": 100.0}, max_nodes=10)
    gm = _graph(spec)
    assert any(n.op == "get_attr" and n.target.startswith("_tensor_constant") for n in gm.graph.nodes)


def test_traced_assert_is_a_graph_node() -> None:
    spec = _search(lambda s: any(n["op"] == "assert" and n["attrs"]["style"] == 0 for n in s["nodes"]), weights={"assert": 100.0}, max_nodes=10)
    assert any(n.op == "call_function" and n.target is torch._assert for n in _graph(spec).graph.nodes)


def test_dead_code_is_kept_by_tracing() -> None:
    spec = _search(lambda s: any(n["op"] == "dead_code" for n in s["nodes"]), weights={"dead_code": 100.0}, max_nodes=10)
    gm = _graph(spec)
    assert any(not n.users and n.op not in ("output", "placeholder") and n.target is not torch._assert for n in gm.graph.nodes)


def test_small_graphs_are_drawn() -> None:
    small = _search(lambda s: spec_mod.op_count(s) <= 1, max_nodes=200)
    assert len(_graph(small).graph.nodes) <= 5


def test_long_gene_lists_fill_the_node_budget() -> None:
    import random

    rng = random.Random(0)
    genome = _genome([rng.choice(vocabulary()) for _ in range(400)])
    genome["genes"] = [(kind, [rng.randrange(256) for _ in range(8)]) for kind, _ in genome["genes"]]
    spec = realize(genome, Config.make(max_nodes=200))
    assert 150 <= len(_graph(spec).graph.nodes) <= 200


@pytest.mark.slow
def test_graphs_near_two_hundred_nodes_are_drawn() -> None:
    big = _search(lambda s: len(s["nodes"]) >= 120, max_nodes=200)
    assert 120 <= len(_graph(big).graph.nodes) <= 200


def _shares_right_operand(spec: dict) -> bool:
    rights = [n["in"][1] for n in spec["nodes"] if n["op"] in ("matmul", "mm", "bmm", "addmm", "einsum", "linear_fn")]
    return len(rights) != len(set(rights))


@pytest.mark.slow
def test_shrinking_a_shared_matmul_operand_gives_at_most_three_ops() -> None:
    spec = _shrink(_shares_right_operand, max_nodes=30)
    assert spec_mod.op_count(spec) <= 3
    _check_spec(spec, 0)


@pytest.mark.slow
def test_shrinking_reduces_shapes_to_size_one() -> None:
    spec = _shrink(lambda s: any(n["op"] == "matmul" for n in s["nodes"]), max_nodes=30)
    assert spec_mod.op_count(spec) == 1
    assert all(math.prod(i["shape"]) == 1 for i in spec["inputs"])


@pytest.mark.slow
def test_a_failing_given_reports_a_small_module() -> None:
    # the shape hypothesis users see: a property that fails on shared matmul operands
    failures: list[dict] = []

    @settings(max_examples=2000, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(modules(max_nodes=30))
    def prop(spec: dict) -> None:
        if _shares_right_operand(spec):
            failures.append(spec)
            raise AssertionError("shared right operand")

    with pytest.raises(AssertionError, match="shared right operand"):
        prop()
    assert spec_mod.op_count(failures[-1]) <= 3


@pytest.mark.parametrize(
    ("knobs", "allowed"),
    [
        ({"include": ["linalg"]}, {"matmul", "mm", "bmm", "addmm", "einsum", "linear_fn", "outer", "param"}),
        ({"include": ["relu", "add"]}, {"relu", "add", "param"}),
        ({"include": ["reduce", "view"]}, set(kinds_by_category()["reduce"]) | set(kinds_by_category()["view"])),
    ],
)
def test_include_restricts_the_kinds(knobs: dict, allowed: set) -> None:
    @SETTINGS
    @given(modules(**knobs, max_nodes=30))
    def check(spec: dict) -> None:
        assert {n["op"] for n in spec["nodes"]} <= allowed | {"getitem"}

    check()


@pytest.mark.parametrize("excluded", ["matmul", "linalg", "layers", "relu", "mutation"])
def test_exclude_removes_kinds(excluded: str) -> None:
    banned = set(kinds_by_category().get(excluded, [excluded]))

    @SETTINGS
    @given(modules(exclude=[excluded], max_nodes=40))
    def check(spec: dict) -> None:
        assert not ({n["op"] for n in spec["nodes"]} & banned)

    check()


def test_weights_shift_the_mix() -> None:
    config = Config.make(weights={"matmul": 1000.0})
    choices = config.kind_choices()
    assert choices.count("matmul") / len(choices) > 0.5
    assert "relu" in choices


def test_zero_weight_removes_a_kind() -> None:
    assert "relu" not in Config.make(weights={"relu": 0}).kind_choices()


@pytest.mark.parametrize(
    "knobs",
    [{"include": ["no_such_op"]}, {"exclude": ["nope"]}, {"weights": {"bogus": 1.0}}, {"max_nodes": 1}, {"dtypes": ["float16x"]}, {"include": []}, {"weights": {"relu": -1.0}}],
)
def test_bad_knobs_name_what_is_wrong(knobs: dict) -> None:
    with pytest.raises(ValueError):
        RandomSource(**knobs)


def test_unknown_name_error_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: .*matmul"):
        modules(include=["no_such_op"])


def test_every_kind_has_a_docstring_and_category() -> None:
    for name, kind in VOCABULARY.items():
        assert kind.category, name
        assert type(kind).__doc__, name


def test_label_names_size_and_dtype() -> None:
    spec = realize(_genome(["relu"]))
    label = RandomSource().label(spec)
    assert label.startswith("1ops-float32-")


def test_an_in_place_write_never_takes_a_view_of_its_own_memory_as_operand() -> None:
    from generators.random_modules import Config, genomes, realize

    config = Config(table=(("split", 2.0), ("inplace", 4.0), ("linear", 1.0), ("relu", 1.0)), max_nodes=20,
                    dtypes=("float32",), training=False)

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(genomes(config), st.integers(0, 2**16))
    def runs(genome: dict, seed: int) -> None:
        spec = realize(genome, config)
        built = spec_mod.build(spec, seed)
        with torch.no_grad():  # as the engine runs a case
            built.module(*built.args, **built.kwargs)

    runs()
