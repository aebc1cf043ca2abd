"""The ``opinfo`` source: PyTorch's OpInfo database as traceable single-op modules.

Each case is one sample input of one ``op_db`` entry, wrapped in a small module whose
forward takes the sample's tensors as arguments and fixes everything else (scalars, dims,
dtypes, lists of ints): ``{"op": "add", "variant": "", "sample": 3}``.

Importing ``op_db`` takes seconds and checking every op takes minutes, so which samples
trace is recorded once in an index (``generators/data/opinfo_index.json`` for the pinned
torch version, else a per-user cache built on first use). The index also says why each
left-out op was left out (:meth:`OpInfoSource.excluded`). Refresh it with
``python -m generators.opinfo``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import linecache
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.fx
from hypothesis import strategies as st

from generators.sources import Built, Source, SpecError, check_catalogue_spec, load_or_build_index

INDEX_FORMAT = "fx-conform.opinfo-index/1"
PACKAGED_INDEX = Path(__file__).with_name("data") / "opinfo_index.json"
#: Samples checked per op: enough variety, and keeps the index build to minutes.
MAX_SAMPLES = 8
#: A sample with more elements than this is skipped (slow to run twice per case).
MAX_SAMPLE_ELEMENTS = 1 << 16
#: Seconds allowed to check one op before it is left out as too slow.
OP_TIME_LIMIT_S = 20


@functools.cache
def op_db() -> list[Any]:
    """PyTorch's OpInfo list (imported on first use: it takes seconds)."""
    from torch.testing._internal.common_methods_invocations import op_db as db

    return list(db)


def op_key(name: str, variant: str) -> str:
    return f"{name}.{variant}" if variant else name


def find_op(name: str, variant: str = "") -> Any:
    for op in op_db():
        if op.name == name and op.variant_test_name == variant:
            return op
    raise KeyError(f"no OpInfo named {op_key(name, variant)!r}")


def sample(op: Any, index: int, seed: int) -> Any:
    """Sample ``index`` of ``op`` on CPU in float32, with the global RNG seeded by ``seed``.

    Most sample functions fix their tensor values themselves, so the seed makes a build
    reproducible more than it varies it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = op.sample_inputs("cpu", torch.float32, requires_grad=False)
        found = next(itertools.islice(samples, index, None), None)
    if found is None:
        raise IndexError(f"{op_key(op.name, op.variant_test_name)} has no sample {index}")
    return found


def _split(sample_input: Any) -> tuple[list[Any], Any, list[int]]:
    """Flatten ``(input, args, kwargs)``: leaves, tree spec, positions of tensor leaves."""
    leaves, spec = torch.utils._pytree.tree_flatten((sample_input.input, tuple(sample_input.args), dict(sample_input.kwargs)))
    return leaves, spec, [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]


def call_class_source(positions: list[int]) -> str:
    """Source of ``OpCall``, whose forward takes one argument per tensor leaf."""
    params = ", ".join(["self", *(f"t{i}" for i in range(len(positions)))])
    body = [f"        leaves[{pos}] = t{i}" for i, pos in enumerate(positions)]
    return "\n".join(
        [
            "class OpCall(nn.Module):",
            '    """Calls one op: the sample\'s tensors are forward arguments, every other',
            '    argument (scalars, dims, dtypes, int lists) is fixed when the module is built."""',
            "",
            "    def __init__(self, fn, treespec, leaves):",
            "        super().__init__()",
            "        self.fn = fn",
            "        self.treespec = treespec",
            "        self.leaves = leaves",
            "",
            f"    def forward({params}):",
            "        leaves = list(self.leaves)",
            *body,
            "        inp, args, kwargs = torch.utils._pytree.tree_unflatten(leaves, self.treespec)",
            "        return self.fn(inp, *args, **kwargs)",
            "",
        ]
    )


@functools.lru_cache(maxsize=64)
def _call_class(source: str) -> type[torch.nn.Module]:
    text = "import torch\nimport torch.nn as nn\n\n\n" + source
    filename = f"<fx-conform opinfo call {hashlib.sha256(text.encode()).hexdigest()[:10]}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(text, filename, "exec"), namespace)
    return namespace["OpCall"]


def wrap(op: Any, sample_input: Any) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """A module calling ``op`` on ``sample_input``'s non-tensor arguments, and the tensors
    to call it with."""
    leaves, spec, positions = _split(sample_input)
    fixed = [None if i in positions else leaf for i, leaf in enumerate(leaves)]
    module = _call_class(call_class_source(positions))(op.op, spec, fixed)
    return module, tuple(leaves[i].clone() for i in positions)


def _outputs_equal(a: Any, b: Any) -> bool:
    la, sa = torch.utils._pytree.tree_flatten(a)
    lb, sb = torch.utils._pytree.tree_flatten(b)
    if sa != sb:
        return False
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if isinstance(x, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if x.is_floating_point() or x.is_complex():
                if not torch.equal(torch.nan_to_num(x), torch.nan_to_num(y)) or not torch.equal(x.isnan(), y.isnan()):
                    return False
            elif not torch.equal(x, y):
                return False
        elif x != y and not (x != x and y != y):
            return False
    return True


def _run(module: torch.nn.Module, args: tuple[Any, ...], seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return module(*[a.clone() for a in args])


def check(op: Any, index: int) -> tuple[str | None, bool]:
    """Does sample ``index`` of ``op`` wrap into a traceable module?

    Returns:
        ``(reason, stochastic)``: reason is None when it does, else why not; stochastic
        says the op draws random numbers (outputs then compare by shape and dtype).
    """
    stage = "sample"
    try:
        s = sample(op, index, seed=0)
        module, args = wrap(op, s)
        if sum(a.numel() for a in args) > MAX_SAMPLE_ELEMENTS:
            return "sample: too large for a quick case", False
        stage = "eager"
        first, second = _run(module, args, 1), _run(module, args, 2)
        stochastic = not _outputs_equal(first, second)
        stage = "trace"
        gm = torch.fx.symbolic_trace(module)
        gm.graph.lint()
        if not any(n.op in ("call_function", "call_method", "call_module") for n in gm.graph.nodes):
            return "trace: the traced graph computes nothing", stochastic
        stage = "traced run"
        traced = _run(gm, args, 1)
        if stochastic:
            same = _outputs_equal(
                torch.utils._pytree.tree_map(lambda t: t.shape if isinstance(t, torch.Tensor) else t, first),
                torch.utils._pytree.tree_map(lambda t: t.shape if isinstance(t, torch.Tensor) else t, traced),
            )
        else:
            same = _outputs_equal(first, traced)
        if not same:
            return "traced run: the traced module computes something else than eager", stochastic
        return None, stochastic
    except Exception as exc:  # an op may fail in any way; the reason is recorded
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        return f"{stage}: {type(exc).__name__}: {first_line}", False


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def build_index(verbose: bool = False) -> dict[str, Any]:
    """Check every op of ``op_db`` (minutes) and return the index."""
    cases: dict[str, dict[str, Any]] = {}
    excluded: dict[str, str] = {}
    for op in op_db():
        key = op_key(op.name, op.variant_test_name)
        start = time.monotonic()
        if torch.float32 not in op.supported_dtypes("cpu"):
            excluded[key] = "dtype: float32 is not supported on CPU"
            continue
        good: list[int] = []
        stochastic = False
        reasons: list[str] = []
        try:
            with _time_limit(OP_TIME_LIMIT_S):
                for index in range(MAX_SAMPLES):
                    reason, random = check(op, index)
                    if reason is None:
                        good.append(index)
                        stochastic = stochastic or random
                    elif reason.startswith("sample: IndexError"):
                        break
                    else:
                        reasons.append(reason)
        except _Timeout:
            reasons.append(f"time: checking took over {OP_TIME_LIMIT_S} s")
        if good:
            cases[key] = {"name": op.name, "variant": op.variant_test_name, "samples": good, "stochastic": stochastic}
        else:
            excluded[key] = reasons[0] if reasons else "sample: the op has no float32 CPU samples"
        if verbose:
            print(f"{key}: {len(good)} samples ({time.monotonic() - start:.1f}s)", file=sys.stderr)
    return {"format": INDEX_FORMAT, "torch": torch.__version__, "max_samples": MAX_SAMPLES, "cases": cases, "excluded": excluded}


@functools.cache
def load_index() -> dict[str, Any]:
    """The op_db index for the running torch (see :func:`~generators.sources.load_or_build_index`)."""
    return load_or_build_index(PACKAGED_INDEX, "opinfo_index", {"format": INDEX_FORMAT, "torch": torch.__version__}, build_index)


class OpInfoSource(Source):
    """One case per traceable (op, sample) of ``op_db`` on CPU in float32."""

    name = "opinfo"
    description = "OpInfo samples (CPU, float32) wrapped in single-op modules"

    def cases(self) -> list[dict[str, Any]]:
        """Every case spec, in index order."""
        out = []
        for entry in load_index()["cases"].values():
            for index in entry["samples"]:
                out.append({"op": entry["name"], "variant": entry["variant"], "sample": index})
        return out

    def excluded(self) -> dict[str, str]:
        """``{op: reason}`` for every ``op_db`` entry left out (``name.variant`` keys)."""
        return dict(load_index()["excluded"])

    def specs(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.sampled_from(self.cases())

    def count(self) -> int | None:
        return sum(len(e["samples"]) for e in load_index()["cases"].values())

    def _stochastic(self, spec: dict[str, Any]) -> bool:
        entry = load_index()["cases"].get(op_key(spec["op"], spec.get("variant", "")))
        return bool(entry and entry["stochastic"])

    def validate(self, spec: Any) -> None:
        check_catalogue_spec(spec, {"op": str, "variant": str, "sample": int}, optional=("variant",))
        key = op_key(spec["op"], spec.get("variant", ""))
        entry = load_index()["cases"].get(key)
        if entry is None:
            raise SpecError(f"op: {key!r:.60} is not an OpInfo case of the index (see generators/data/opinfo_index.json)")
        if spec["sample"] not in entry["samples"]:
            raise SpecError(f"sample: {key} has no indexed sample {spec['sample']} (valid: {', '.join(map(str, entry['samples']))})")

    def build(self, spec: Any, seed: int) -> Built:
        self.validate(spec)
        op = find_op(spec["op"], spec.get("variant", ""))
        module, args = wrap(op, sample(op, spec["sample"], seed))
        return Built(module=module, args=args, stochastic=self._stochastic(spec))

    def source_code(self, spec: Any, seed: int) -> str:
        self.validate(spec)
        op = find_op(spec["op"], spec.get("variant", ""))
        _, _, positions = _split(sample(op, spec["sample"], seed))
        lines = [
            f'"""fx-conform opinfo case: {op_key(spec["op"], spec.get("variant", ""))} sample {spec["sample"]} (seed {seed})."""',
            "",
            "import itertools",
            "",
            "import torch",
            "import torch.nn as nn",
            "from torch.testing._internal.common_methods_invocations import op_db",
            "",
            f"OP, VARIANT, SAMPLE, SEED = {spec['op']!r}, {spec.get('variant', '')!r}, {spec['sample']}, {seed}",
            "",
            "",
            call_class_source(positions).rstrip(),
            "",
            "",
            "def build_case():",
            "    op = next(o for o in op_db if o.name == OP and o.variant_test_name == VARIANT)",
            "    with torch.random.fork_rng(devices=[]):",
            "        torch.manual_seed(SEED)",
            '        samples = op.sample_inputs("cpu", torch.float32, requires_grad=False)',
            "        sample = next(itertools.islice(samples, SAMPLE, None))",
            "    leaves, spec = torch.utils._pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))",
            f"    positions = {positions!r}",
            "    fixed = [None if i in positions else leaf for i, leaf in enumerate(leaves)]",
            "    return OpCall(op.op, spec, fixed), tuple(leaves[i].clone() for i in positions), {}",
            "",
        ]
        return "\n".join(lines)

    def label(self, spec: Any) -> str:
        return f"{op_key(spec['op'], spec.get('variant', ''))}[{spec['sample']}]"


def main() -> None:
    """Rebuild the packaged index for the running torch."""
    data = build_index(verbose="-v" in sys.argv)
    PACKAGED_INDEX.parent.mkdir(parents=True, exist_ok=True)
    PACKAGED_INDEX.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    total = sum(len(e["samples"]) for e in data["cases"].values())
    print(f"{len(data['cases'])} ops, {total} cases, {len(data['excluded'])} ops left out -> {PACKAGED_INDEX}")


if __name__ == "__main__":
    main()
