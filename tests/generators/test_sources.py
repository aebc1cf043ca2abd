"""The opinfo, nn_modules and torchvision sources: their indexes list cases cheaply and say
why the rest were left out; a sample of their cases builds, traces and agrees with eager,
and their standalone sources rebuild the same case."""

from __future__ import annotations

import pytest
import torch
from _generator_checks import check_built, exec_source, run, same
from hypothesis import HealthCheck, given, settings

from generators.nn_modules import NNModuleSource
from generators.opinfo import OpInfoSource
from generators.sources import SpecError, get_source, source_names
from generators.torchvision_models import TorchvisionSource

OPINFO = OpInfoSource()
NN = NNModuleSource()


def _every(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (a fixed, reproducible sample)."""
    step = max(1, len(items) // n)
    return items[::step][:n]


@pytest.mark.parametrize("name", ["random", "opinfo", "nn_modules", "torchvision", "factory"])
def test_sources_are_registered(name: str) -> None:
    assert name in source_names()
    assert get_source(name).name == name


# opinfo ------------------------------------------------------------------------------------


def test_opinfo_lists_cases_and_counts_them() -> None:
    cases = OPINFO.cases()
    assert OPINFO.count() == len(cases) > 1000
    assert {"op": "add", "variant": "", "sample": 0} in cases
    assert len({(c["op"], c["variant"]) for c in cases}) > 400


def test_opinfo_records_why_ops_were_left_out() -> None:
    excluded = OPINFO.excluded()
    assert excluded["bitwise_and"].startswith("dtype:")
    assert excluded["__getitem__"].startswith("trace:")
    stages = {reason.split(":")[0] for reason in excluded.values()}
    assert stages <= {"dtype", "sample", "eager", "trace", "traced run", "time"}
    listed = {f"{c['op']}.{c['variant']}" if c["variant"] else c["op"] for c in OPINFO.cases()}
    assert not listed & set(excluded)


def test_opinfo_specs_are_small_json() -> None:
    @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(OPINFO.specs())
    def check(spec: dict) -> None:
        assert set(spec) == {"op", "variant", "sample"}
        assert OPINFO.label(spec).startswith(spec["op"])

    check()


@pytest.mark.slow
@pytest.mark.parametrize("spec", _every(OPINFO.cases(), 40), ids=OPINFO.label)
def test_opinfo_cases_build_and_trace(spec: dict) -> None:
    check_built(OPINFO.build(spec, seed=3))


@pytest.mark.slow
@pytest.mark.parametrize("spec", _every(OPINFO.cases(), 4), ids=OPINFO.label)
def test_opinfo_source_code_rebuilds_the_case(spec: dict) -> None:
    built = OPINFO.build(spec, seed=5)
    module, args, kwargs = exec_source(OPINFO.source_code(spec, seed=5))
    assert same(args, built.args)
    assert same(run(module, built), run(built.module, built), meta_only=built.stochastic)


@pytest.mark.slow
def test_opinfo_build_is_deterministic_in_seed() -> None:
    # PyTorch's sample functions fix most sample values themselves; the seed only has to
    # make the build reproducible
    spec = {"op": "add", "variant": "", "sample": 0}
    a, b = OPINFO.build(spec, 1), OPINFO.build(spec, 1)
    assert same(a.args, b.args)


# nn_modules --------------------------------------------------------------------------------


def test_nn_modules_lists_constructing_entries() -> None:
    names = NN.names()
    assert NN.count() == len(names) > 200
    assert "Linear" in names and "Conv2d_dilated" in names
    assert set(NN.traceable()) <= set(names)
    assert len(NN.traceable()) > 50


def test_nn_modules_excluded_entries_have_reasons() -> None:
    assert all(reason.split(":")[0] in ("construct", "eager") for reason in NN.excluded().values())
    assert not set(NN.excluded()) & set(NN.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", _every(NN.traceable(), 30))
def test_nn_module_cases_build_and_trace(name: str) -> None:
    check_built(NN.build({"entry": name}, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", _every(sorted(set(NN.names()) - set(NN.traceable())), 8))
def test_untraceable_nn_module_cases_still_run_eagerly(name: str) -> None:
    built = NN.build({"entry": name}, seed=1)
    run(built.module, built)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Linear", "Conv2d_dilated", "GELU_no_batch_dim"])
def test_nn_module_source_code_rebuilds_the_case(name: str) -> None:
    built = NN.build({"entry": name}, seed=4)
    module, args, _ = exec_source(NN.source_code({"entry": name}, seed=4))
    assert same(module.state_dict(), built.module.state_dict())
    assert same(run(module, built), run(built.module, built))


def test_nn_module_unknown_entry_names_it() -> None:
    with pytest.raises(SpecError, match="entry: 'no_such_entry' is not an nn-module test entry"):
        NN.build({"entry": "no_such_entry"}, seed=0)


# torchvision -------------------------------------------------------------------------------

TV = TorchvisionSource()


@pytest.mark.slow
def test_torchvision_index_covers_every_classification_model() -> None:
    from generators.torchvision_models import model_names

    accepted = {c["model"] for c in TV.cases()}
    assert accepted | set(TV.rejected()) == set(model_names())
    assert not accepted & set(TV.rejected())
    assert TV.count() == len(accepted) > 20
    assert "resnet18" in accepted


def test_torchvision_rejections_say_why() -> None:
    rejected = TV.rejected()
    assert rejected, "the largest models are expected to be left out"
    assert all(reason.split(":")[0] in ("size", "eager", "trace") for reason in rejected.values())
    # a model left out for its size still says whether symbolic_trace accepts it
    assert all("symbolic_trace" in reason for reason in rejected.values() if reason.startswith("size"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5", "resnet18"])
def test_torchvision_models_build_and_trace(model: str) -> None:
    spec = next(c for c in TV.cases() if c["model"] == model)
    with torch.no_grad():
        check_built(TV.build(spec, seed=0))


@pytest.mark.slow
def test_torchvision_source_code_rebuilds_the_case() -> None:
    spec = next(c for c in TV.cases() if c["model"] == "squeezenet1_1")
    built = TV.build(spec, seed=2)
    module, args, _ = exec_source(TV.source_code(spec, seed=2))
    assert same(args, built.args)
    with torch.no_grad():
        assert same(run(module, built), run(built.module, built))
