"""The ``nn_modules`` source: the module test entries of ``torch.testing._internal.common_nn``
(``module_tests + get_new_module_tests()``).

A case is one entry, named as PyTorch's own tests name it: ``{"entry": "Conv2d_dilated"}``.
The module is built from the entry's constructor and arguments, the input from its
``input_fn`` or ``input_size``, all in the process default dtype (float32): entries written
for a float64 default still run, and a forward that creates tensors does not mix dtypes.

Which entries construct and run is recorded once in an index (packaged for the pinned torch
version, else cached per user); entries left out are listed with the reason
(:meth:`NNModuleSource.excluded`). Refresh it with ``python -m generators.nn_modules``.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.fx
from hypothesis import strategies as st

from generators.sources import Built, Source, SpecError, check_catalogue_spec, load_or_build_index

INDEX_FORMAT = "fx-conform.nn-modules-index/1"
PACKAGED_INDEX = Path(__file__).with_name("data") / "nn_modules_index.json"


def entry_name(entry: dict[str, Any]) -> str:
    """The name PyTorch's module tests give an entry."""
    if "fullname" in entry:
        return str(entry["fullname"])
    desc = entry.get("desc")
    return f"{entry['module_name']}_{desc}" if desc else str(entry["module_name"])


@functools.cache
def entries() -> dict[str, dict[str, Any]]:
    """Every entry by unique name (a repeated name gets ``#2``, ``#3``, ...)."""
    from torch.testing._internal.common_nn import get_new_module_tests, module_tests

    out: dict[str, dict[str, Any]] = {}
    for entry in [*module_tests, *get_new_module_tests()]:
        name = entry_name(entry)
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name}#{n}"
        out[key] = entry
    return out


def instantiate(entry: dict[str, Any], seed: int) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    """The entry's module and input, parameters and values drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ctor = entry.get("constructor") or getattr(torch.nn, entry["module_name"])
        module = ctor(*entry.get("constructor_args", ()))
        if "input_fn" in entry:
            value = entry["input_fn"]()
        elif "input_size" in entry:
            value = torch.randn(entry["input_size"])
        else:
            value = entry["input"]
    args = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return module, args


def _check(entry: dict[str, Any]) -> tuple[str | None, bool]:
    """``(reason it is left out or None, whether symbolic_trace accepts it)``."""
    stage = "construct"
    try:
        module, args = instantiate(entry, 0)
        stage = "eager"
        module(*args)
    except Exception as exc:  # entries fail in many ways; the reason is what is recorded
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        return f"{stage}: {type(exc).__name__}: {first}", False
    try:
        torch.fx.symbolic_trace(module).graph.lint()
        return None, True
    except Exception:
        return None, False


def build_index() -> dict[str, Any]:
    cases: dict[str, dict[str, Any]] = {}
    excluded: dict[str, str] = {}
    for name, entry in entries().items():
        reason, traces = _check(entry)
        if reason is None:
            cases[name] = {"traces": traces}
        else:
            excluded[name] = reason
    return {"format": INDEX_FORMAT, "torch": torch.__version__, "cases": cases, "excluded": excluded}


@functools.cache
def load_index() -> dict[str, Any]:
    """The nn-module index for the running torch (see :func:`~generators.sources.load_or_build_index`)."""
    return load_or_build_index(PACKAGED_INDEX, "nn_modules_index", {"format": INDEX_FORMAT, "torch": torch.__version__}, build_index)


class NNModuleSource(Source):
    """One case per nn-module test entry that constructs and runs on its input.

    Entries that ``symbolic_trace`` rejects stay in (the engine records them as
    unsupported at the trace stage); :meth:`traceable` lists those it accepts.
    """

    name = "nn_modules"
    description = "PyTorch's nn module test entries (module_tests + get_new_module_tests())"

    def names(self) -> list[str]:
        return sorted(load_index()["cases"])

    def traceable(self) -> list[str]:
        return sorted(n for n, e in load_index()["cases"].items() if e["traces"])

    def excluded(self) -> dict[str, str]:
        """``{entry: reason}`` for every entry that does not construct or run."""
        return dict(load_index()["excluded"])

    def specs(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.sampled_from([{"entry": n} for n in self.names()])

    def count(self) -> int | None:
        return len(load_index()["cases"])

    def validate(self, spec: Any) -> None:
        check_catalogue_spec(spec, {"entry": str})
        if spec["entry"] not in load_index()["cases"]:
            raise SpecError(f"entry: {spec['entry']!r:.60} is not an nn-module test entry of the index")

    def build(self, spec: Any, seed: int) -> Built:
        self.validate(spec)
        entry = entries().get(spec["entry"])
        if entry is None:
            raise KeyError(f"no nn-module test entry named {spec['entry']!r}")
        module, args = instantiate(entry, seed)
        return Built(module=module, args=args, stochastic=_draws_random(module))

    def source_code(self, spec: Any, seed: int) -> str:
        self.validate(spec)
        return "\n".join(
            [
                f'"""fx-conform nn_modules case: {spec["entry"]} (seed {seed})."""',
                "",
                "import torch",
                "from torch.testing._internal.common_nn import get_new_module_tests, module_tests",
                "",
                f"ENTRY, SEED = {spec['entry']!r}, {seed}",
                "",
                "",
                "def _entry():",
                "    # entries are keyed by their test name; a repeated name gets '#2', '#3', ...",
                "    seen = {}",
                "    for entry in [*module_tests, *get_new_module_tests()]:",
                "        if 'fullname' in entry:",
                "            name = entry['fullname']",
                "        else:",
                "            desc = entry.get('desc')",
                "            name = f\"{entry['module_name']}_{desc}\" if desc else entry['module_name']",
                "        seen[name] = seen.get(name, 0) + 1",
                "        key = name if seen[name] == 1 else f'{name}#{seen[name]}'",
                "        if key == ENTRY:",
                "            return entry",
                "    raise KeyError(ENTRY)",
                "",
                "",
                "def build_case():",
                "    entry = _entry()",
                "    with torch.random.fork_rng(devices=[]):",
                "        torch.manual_seed(SEED)",
                "        ctor = entry.get('constructor') or getattr(torch.nn, entry['module_name'])",
                "        module = ctor(*entry.get('constructor_args', ()))",
                "        if 'input_fn' in entry:",
                "            value = entry['input_fn']()",
                "        elif 'input_size' in entry:",
                "            value = torch.randn(entry['input_size'])",
                "        else:",
                "            value = entry['input']",
                "    args = tuple(value) if isinstance(value, (tuple, list)) else (value,)",
                "    return module, args, {}",
                "",
            ]
        )

    def label(self, spec: Any) -> str:
        return str(spec["entry"])


def _draws_random(module: torch.nn.Module) -> bool:
    # modules that sample in training mode (dropout variants, RReLU) are compared by
    # shape and dtype only
    random_types = (torch.nn.modules.dropout._DropoutNd, torch.nn.RReLU)
    return any(isinstance(m, random_types) for m in module.modules()) and module.training


def main() -> None:
    """Rebuild the packaged index for the running torch."""
    data = build_index()
    PACKAGED_INDEX.parent.mkdir(parents=True, exist_ok=True)
    PACKAGED_INDEX.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    traced = sum(1 for e in data["cases"].values() if e["traces"])
    print(f"{len(data['cases'])} entries ({traced} trace), {len(data['excluded'])} left out -> {PACKAGED_INDEX}", file=sys.stderr)


if __name__ == "__main__":
    main()
