"""Mutants of reference modules, planted in campaign workers by plugin modules.

A mutant replaces one line of a reference module with a subtly wrong one and installs the
result under the module's name. :func:`plant` does so only in a campaign's worker processes
(children of the supervisor), never in the process that loads the plugin, so a test process
keeps the real reference for the tests that follow.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import multiprocessing
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # reference basename
    old: str
    new: str
    transform: str
    include: tuple[str, ...]  # random-source op kinds the campaign draws from
    symptom: str
    plugin: str  # the plugin module that plants it


MUTANTS = [
    Mutant("sub-becomes-add", "normalize", '("sub", "sub")', '("sub", "add")', "normalize_operators",
           ("sub",), "eager-mismatch", "_mutant_sub_becomes_add"),
    Mutant("stride-reversed", "shape_prop", "stride=() if sparse else t.stride(),",
           "stride=() if sparse else tuple(reversed(t.stride())),", "shape_prop",
           ("relu", "add", "permute"), "impl-divergence", "_mutant_stride_reversed"),
]
BY_NAME = {m.name: m for m in MUTANTS}


def mutated_source(mutant: Mutant) -> tuple[Path, str]:
    path = ROOT / "reference" / f"{mutant.module}.py"
    source = path.read_text()
    assert source.count(mutant.old) == 1, f"the mutation site of {mutant.name} is gone from {path.name}"
    return path, source.replace(mutant.old, mutant.new)


def plant(name: str) -> None:
    """Install the mutant ``name`` in this process when it is a campaign worker."""
    if multiprocessing.parent_process() is None:
        return
    mutant = BY_NAME[name]
    path, source = mutated_source(mutant)
    module_name = f"reference.{mutant.module}"
    planted = types.ModuleType(module_name)
    planted.__file__ = str(path)
    planted.__spec__ = importlib.util.spec_from_file_location(module_name, path)
    sys.modules[module_name] = planted
    exec(compile(source, str(path), "exec"), planted.__dict__)
    import reference

    setattr(reference, mutant.module, planted)
