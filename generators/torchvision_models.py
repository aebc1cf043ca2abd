"""The ``torchvision`` source: torchvision's classification models at a small input size.

A case is ``{"model": "resnet18", "size": 64}``: the model built with ``weights=None`` and
``num_classes=10`` in eval mode, called on one ``3 x size x size`` image. ``size`` is the
smallest of :data:`SIZES` the model accepts.

Which models ``symbolic_trace`` accepts, at which size, and why the others are rejected is
recorded once in an index (packaged for the pinned torch/torchvision, else cached per user;
:meth:`TorchvisionSource.rejected`). Model names are listed without building anything;
a model is built only when its case is. Refresh the index with
``python -m generators.torchvision_models``.
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

INDEX_FORMAT = "fx-conform.torchvision-index/1"
PACKAGED_INDEX = Path(__file__).with_name("data") / "torchvision_index.json"
#: Input sizes tried in order; most models accept the first.
SIZES = (32, 64, 96, 128, 160, 224, 299)
NUM_CLASSES = 10
#: Models above this many parameters are left out: every case deep-copies the model
#: several times and runs it on two implementations, within seconds on a small CPU.
MAX_PARAMS = 30_000_000


def _versions() -> str:
    import torchvision

    return f"torch {torch.__version__}, torchvision {torchvision.__version__}"


@functools.cache
def model_names() -> list[str]:
    """Every classification model torchvision lists (no model is built)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def make_model(name: str, seed: int) -> torch.nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES)
    return model.eval()


def make_input(size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, size, size), generator=gen)


def _skeleton(name: str) -> torch.nn.Module:
    """The model with storage-free parameters where the builder allows it (counting and
    tracing need no values)."""
    import torchvision

    try:
        # built on the meta device, counting parameters allocates nothing
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES)
    except NotImplementedError:
        # some builders compute layer widths from tensor values (RegNet), which the meta
        # device cannot give; build those for real
        model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES)
    return model


def _trace_verdict(model: torch.nn.Module) -> str:
    try:
        torch.fx.symbolic_trace(model).graph.lint()
        return "symbolic_trace accepts it"
    except Exception as exc:  # the verdict is informational
        return f"symbolic_trace rejects it: {type(exc).__name__}"


def _check(name: str) -> tuple[dict[str, Any] | None, str | None]:
    skeleton = _skeleton(name)
    params = sum(p.numel() for p in skeleton.parameters())
    if params > MAX_PARAMS:
        limit = f"{params / 1e6:.0f}M parameters (limit {MAX_PARAMS / 1e6:.0f}M)"
        return None, f"size: {limit}; {_trace_verdict(skeleton)}"
    del skeleton
    model = make_model(name, 0)
    size = None
    last = ""
    for candidate in SIZES:
        try:
            with torch.no_grad():
                model(make_input(candidate, 0))
            size = candidate
            break
        except Exception as exc:  # too small an image fails in model-specific ways
            last = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}"
    if size is None:
        return None, f"eager: no input size in {SIZES} runs ({last})"
    try:
        gm = torch.fx.symbolic_trace(model)
        gm.graph.lint()
    except Exception as exc:
        return None, f"trace: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    return {"size": size, "params": params, "nodes": len(gm.graph.nodes)}, None


def build_index(verbose: bool = False) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    rejected: dict[str, str] = {}
    for name in model_names():
        entry, reason = _check(name)
        if entry is not None:
            cases[name] = entry
        else:
            rejected[name] = str(reason)
        if verbose:
            print(f"{name}: {entry or reason}", file=sys.stderr)
    return {"format": INDEX_FORMAT, "versions": _versions(), "cases": cases, "rejected": rejected}


@functools.cache
def load_index() -> dict[str, Any]:
    """The model index for the installed torch and torchvision (see
    :func:`~generators.sources.load_or_build_index`)."""
    return load_or_build_index(PACKAGED_INDEX, "torchvision_index", {"format": INDEX_FORMAT, "versions": _versions()}, build_index)


class TorchvisionSource(Source):
    """One case per torchvision classification model that traces at a small size."""

    name = "torchvision"
    description = "torchvision classification models (weights=None, 10 classes, eval mode, small images)"

    def cases(self) -> list[dict[str, Any]]:
        return [{"model": name, "size": entry["size"]} for name, entry in sorted(load_index()["cases"].items())]

    def rejected(self) -> dict[str, str]:
        """``{model: reason}`` for every classification model left out."""
        return dict(load_index()["rejected"])

    def specs(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.sampled_from(self.cases())

    def count(self) -> int | None:
        return len(load_index()["cases"])

    def validate(self, spec: Any) -> None:
        check_catalogue_spec(spec, {"model": str, "size": int})
        if spec["model"] not in load_index()["cases"]:
            raise SpecError(f"model: {spec['model']!r:.60} is not a torchvision model of the index")
        if spec["size"] not in SIZES:
            raise SpecError(f"size: {spec['size']} is not one of {', '.join(map(str, SIZES))}")

    def build(self, spec: Any, seed: int) -> Built:
        self.validate(spec)
        return Built(module=make_model(spec["model"], seed), args=(make_input(spec["size"], seed),))

    def source_code(self, spec: Any, seed: int) -> str:
        self.validate(spec)
        return "\n".join(
            [
                f'"""fx-conform torchvision case: {spec["model"]} at {spec["size"]}x{spec["size"]} (seed {seed})."""',
                "",
                "import torch",
                "import torchvision",
                "",
                f"MODEL, SIZE, SEED = {spec['model']!r}, {spec['size']}, {seed}",
                "",
                "",
                "def build_case():",
                "    with torch.random.fork_rng(devices=[]):",
                "        torch.manual_seed(SEED)",
                f"        model = torchvision.models.get_model(MODEL, weights=None, num_classes={NUM_CLASSES})",
                "    gen = torch.Generator().manual_seed(SEED)",
                "    image = torch.rand((1, 3, SIZE, SIZE), generator=gen)",
                "    return model.eval(), (image,), {}",
                "",
            ]
        )

    def label(self, spec: Any) -> str:
        return f"{spec['model']}@{spec['size']}"


def main() -> None:
    """Rebuild the packaged index for the installed torch and torchvision."""
    data = build_index(verbose="-v" in sys.argv)
    PACKAGED_INDEX.parent.mkdir(parents=True, exist_ok=True)
    PACKAGED_INDEX.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(data['cases'])} models, {len(data['rejected'])} rejected -> {PACKAGED_INDEX}", file=sys.stderr)


if __name__ == "__main__":
    main()
