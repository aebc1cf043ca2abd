"""A case written as Python: the ``build_case()`` section of repro scripts.

The section defines ``build_case()`` returning ``(module, args, kwargs)`` and the constants
that say how to trace the module: ``SEED``, ``LEAF_MODULES``, ``CONCRETE_ARGS`` and
``STOCHASTIC``. For hand-written cases (factories, samples) the factory function and what it
needs are copied in (:mod:`conform.bugs.inline`), for random modules the spec is rendered
as source; either way the section imports only torch. Other sources write their own
``build_case()``, which may import their catalogue (OpInfo, torchvision).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from conform.bugs.inline import InlineError, inline
from conform.case import Case
from conform.registry import load

_PROJECT_IMPORT = re.compile(r"^\s*(from|import)\s+(conform|generators|reference)\b", re.M)
_MAIN = re.compile(r'^if __name__ == "__main__":.*\Z', re.M | re.S)


@dataclasses.dataclass
class CaseCode:
    """The section's text.

    Args:
        imports: import lines the section needs (torch and the standard library, when
            ``standalone``).
        body: definitions, ``build_case()`` and the constants.
        future_annotations: the copied definitions come from modules that postpone the
            evaluation of annotations; the script must too (a tracer reads them).
        standalone: the section imports nothing of fx-conform.
    """

    imports: str
    body: str
    future_annotations: bool = False
    standalone: bool = True


def _factory_function(case: Case) -> tuple[Any, dict[str, Any]] | None:
    if case.source == "factory":
        return load(case.spec["factory"]), dict(case.spec.get("kwargs", {}))
    if case.source == "samples":
        return load(f"generators.samples:{case.spec['sample']}"), {}
    return None


def case_code(case: Case) -> CaseCode:
    """The ``build_case()`` section for ``case`` (standalone whenever the source allows).

    Args:
        case: a recorded case; it is built once to learn how it is traced.
    """
    with torch.random.fork_rng(devices=[]):  # building seeds the global RNG; the caller's state stays
        built = case.build()
    found = _factory_function(case)
    if found is not None:
        function, kwargs = found
        try:
            imports, body, future = inline([function])
        except InlineError:
            pass
        else:
            leaves = []
            for cls in built.leaf_modules:
                if not re.search(rf"^class {re.escape(cls.__qualname__)}\b", body, re.M):
                    break
                leaves.append(cls.__qualname__)
            else:
                call = f"{function.__name__}(**{kwargs!r})" if kwargs else f"{function.__name__}()"
                tail = [
                    "",
                    "",
                    "",
                    f"SEED = {case.seed}",
                    f"LEAF_MODULES = {_tuple(leaves)}",
                    f"CONCRETE_ARGS = {built.concrete_args!r}",
                    f"STOCHASTIC = {built.stochastic!r}",
                    "",
                    "",
                    "def build_case():",
                    "    torch.manual_seed(SEED)",
                    f"    built = {call}",
                    "    return built.module, built.args, built.kwargs",
                ]
                return CaseCode(imports, body + "\n".join(tail) + "\n", future, True)
    source = case.source_code()
    source = _MAIN.sub("", source).rstrip() + "\n"
    extra = [f"SEED = {case.seed}"] if not re.search(r"^SEED\b", source, re.M) else []
    if not re.search(r"^CONCRETE_ARGS\b", source, re.M):
        extra.append(f"CONCRETE_ARGS = {built.concrete_args!r}")
    extra.append(f"STOCHASTIC = {built.stochastic!r}")
    standalone = not _PROJECT_IMPORT.search(source)
    if built.leaf_modules:
        names = ", ".join(f"{cls.__module__}.{cls.__qualname__}" for cls in built.leaf_modules)
        extra.append(f"LEAF_MODULES = ({names},)")
        standalone = False
    else:
        extra.append("LEAF_MODULES = ()")
    imports, body = _split_imports(source)
    return CaseCode(imports, body.strip("\n") + "\n\n\n" + "\n".join(extra) + "\n", False, standalone)


def _split_imports(source: str) -> tuple[str, str]:
    """A source's one-line top-level imports apart from the rest; a one-line module
    docstring becomes a comment (the section is not the top of the script)."""
    imports, body = [], []
    for line in source.splitlines():
        if line.startswith(("import ", "from ")) and not line.rstrip().endswith(("(", "\\")):
            imports.append(line)
        elif not body and line.startswith('"""') and line.rstrip().endswith('"""') and len(line.strip()) > 6:
            body.append("# " + line.strip()[3:-3])
        else:
            body.append(line)
    return "\n".join(imports), re.sub(r"\n{4,}", "\n\n\n", "\n".join(body))


def _tuple(names: list[str]) -> str:
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def render(code: CaseCode) -> str:
    """The section as one block of text (imports first)."""
    head = "from __future__ import annotations\n\n" if code.future_annotations else ""
    return head + (code.imports + "\n\n\n" if code.imports else "") + code.body
