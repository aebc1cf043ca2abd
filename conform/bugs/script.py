"""Assemble a standalone repro script: the case, the upstream transform, the symptom check.

The script's ``main()`` builds the case with its own ``build_case()``, runs it eagerly,
traces it, applies the upstream transform to copies (as the engine does) and checks the one
symptom the outcome recorded. It prints ``expected: ...`` / ``actual: ...`` and exits 1 while
the bug shows, prints ``not reproduced`` and exits 0 once it does not, and exits 2 when the
script itself cannot run (the case does not build, say).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

from conform.bugs.case_code import CaseCode
from conform.bugs.case_code import render as render_case
from conform.bugs.inline import import_order, inline
from conform.bugs.transforms import Snippet, literal

#: Placeholder for "this path does not exist" in structural expectations.
MISSING: Any = object()
#: How the script spells it.
ABSENT = "<absent>"


@dataclasses.dataclass
class Check:
    """The symptom a script checks.

    ``kind`` is one of ``raises`` (applying the transform raises ``exception``),
    ``run-raises`` (running its result raises ``exception``), ``outputs`` (the result
    computes other outputs or leaves other inputs than the eager module), ``structure``
    (``paths`` of the structural description differ from ``expected``), ``constraints``
    (the partitions break a constraint of the partitioner), ``lint`` (a produced graph
    fails ``Graph.lint``).
    """

    kind: str
    expected: str
    exception: str | None = None
    paths: list[tuple[list[Any], Any]] = dataclasses.field(default_factory=list)


_COMMON = '''
def copy_graph_module(graph_module):
    """A deep copy that keeps each node's meta as it is."""
    copied = copy.deepcopy(graph_module)
    for src, dst in zip(graph_module.graph.nodes, copied.graph.nodes):
        dst.meta = copy.copy(src.meta)
    return copied


class CaseTracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, LEAF_MODULES) or super().is_leaf_module(m, qualname)


def trace(module):
    torch.manual_seed(SEED)
    tracer = CaseTracer()
    graph = tracer.trace(module, concrete_args=CONCRETE_ARGS)
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


def run(fn, args, kwargs):
    """``fn`` on copies of the inputs, the RNG seeded: (outputs, inputs after the call)."""
    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
    torch.manual_seed(SEED)
    with torch.no_grad():
        outputs = fn(*args, **kwargs)
    return outputs, (args, kwargs)


def transformed():
    """Build the case, run it eagerly, trace it, and apply the transform to copies."""
    module, args, kwargs = build_case()
    eager = run(module, args, kwargs)
    graph_module = trace(module)
    run(graph_module, args, kwargs)
    module, graph_module = copy.deepcopy(module), copy_graph_module(graph_module)
    pristine = copy.deepcopy((args, kwargs))
    torch.manual_seed(SEED)
    runnable, value = apply(module, graph_module, copy.deepcopy(args), copy.deepcopy(kwargs))
    return eager, pristine, runnable, value, graph_module
'''

_COMPARE = '''
def dense(value):
    if isinstance(value, torch.Tensor):
        value = value.dequantize() if value.is_quantized else value
        return value.to_dense() if value.layout != torch.strided else value
    return value


def differs(expected, actual):
    """How ``actual`` differs from ``expected`` (torch.testing.assert_close on every tensor,
    with its dtype-aware tolerances), or None."""
    exp_leaves, exp_spec = torch.utils._pytree.tree_flatten(expected)
    act_leaves, act_spec = torch.utils._pytree.tree_flatten(actual)
    if exp_spec != act_spec:
        return f"structure {act_spec} instead of {exp_spec}"
    for index, (exp, act) in enumerate(zip(exp_leaves, act_leaves)):
        if isinstance(exp, torch.Tensor) and isinstance(act, torch.Tensor):
            if STOCHASTIC:  # random draws may be reordered: shapes and dtypes only
                if (exp.shape, exp.dtype) != (act.shape, act.dtype):
                    return f"leaf {index}: {act.shape} {act.dtype} instead of {exp.shape} {exp.dtype}"
                continue
            try:
                torch.testing.assert_close(dense(act), dense(exp), equal_nan=True, check_stride=False,
                                           check_device=False, check_layout=False)
            except AssertionError as exc:
                return f"leaf {index}: {exc}"
        elif isinstance(exp, float) and isinstance(act, float):
            if not (math.isclose(exp, act, rel_tol=1.3e-6, abs_tol=1e-5) or (math.isnan(exp) and math.isnan(act))):
                return f"leaf {index}: {act!r} instead of {exp!r}"
        elif type(exp) is not type(act) or exp != act:
            return f"leaf {index}: {act!r} instead of {exp!r}"
    return None
'''

_STRUCTURE = '''
class Applied:
    """What the structural description reads: the result, the transform's own return value,
    and the traced module the transform was given."""

    def __init__(self, runnable, value, graph_module):
        self.runnable, self.value = runnable, value
        self.subject = types.SimpleNamespace(graph_module=graph_module)


def lookup(tree, path):
    for key in path:
        if isinstance(tree, dict) and key in tree:
            tree = tree[key]
        elif isinstance(tree, list) and isinstance(key, int) and key < len(tree):
            tree = tree[key]
        else:
            return ABSENT
    return tree
'''


def _check_body(check: Check) -> str:
    """``main()`` for the check."""
    head = textwrap.dedent(f'''


        EXPECTED = {check.expected!r}


        def main():
    ''')
    if check.kind == "raises":
        body = f'''
            try:
                transformed()
            except Exception as exc:
                if type(exc).__name__ != {check.exception!r}:
                    print(f"not reproduced: the transform raises {{type(exc).__name__}}: {{exc}}")
                    return 0
                print(f"expected: {{EXPECTED}}")
                print(f"actual: {{type(exc).__name__}}: {{exc}}")
                return 1
            print("not reproduced: the transform succeeds")
            return 0
        '''
    elif check.kind == "run-raises":
        body = f'''
            eager, (args, kwargs), runnable, value, graph_module = transformed()
            try:
                run(runnable, args, kwargs)
            except Exception as exc:
                if type(exc).__name__ != {check.exception!r}:
                    print(f"not reproduced: the transformed module raises {{type(exc).__name__}}: {{exc}}")
                    return 0
                print(f"expected: {{EXPECTED}}")
                print(f"actual: the transformed module raises {{type(exc).__name__}}: {{exc}}")
                return 1
            print("not reproduced: the transformed module runs")
            return 0
        '''
    elif check.kind == "outputs":
        body = '''
            (expected, inputs), (args, kwargs), runnable, value, graph_module = transformed()
            actual, inputs_after = run(runnable, args, kwargs)
            diff = differs(expected, actual)
            what = "outputs"
            if diff is None:
                diff, what = differs(inputs, inputs_after), "inputs after the call"
            if diff is None:
                print("not reproduced: the transformed module computes what the eager module computes")
                return 0
            print(f"expected: {EXPECTED}")
            print(f"actual: the transformed module computes different {what}: {diff}")
            return 1
        '''
    elif check.kind == "structure":
        body = f'''
            eager, inputs, runnable, value, graph_module = transformed()
            found = json.loads(json.dumps(structure(Applied(runnable, value, graph_module)), default=repr,
                                          sort_keys=True))
            wrong = 0
            for path, want in {_paths_literal(check.paths)}:
                got = lookup(found, path)
                if got != want:
                    wrong += 1
                    print(f"expected: {{'.'.join(map(str, path))}} = {{want!r}}")
                    print(f"actual:   {{'.'.join(map(str, path))}} = {{got!r}}")
            if not wrong:
                print("not reproduced: the structure is as expected")
                return 0
            return 1
        '''
    elif check.kind == "constraints":
        body = '''
            eager, inputs, runnable, value, graph_module = transformed()
            broken = violations(value["partitioner"].partitions, value["config"].devices, graph_module.graph)
            if not broken:
                print("not reproduced: the partitions keep every constraint")
                return 0
            print(f"expected: {EXPECTED}")
            print("actual: " + "; ".join(broken))
            return 1
        '''
    elif check.kind == "lint":
        body = '''
            eager, inputs, runnable, value, graph_module = transformed()
            graphs = [m for m in runnable.modules() if isinstance(m, torch.fx.GraphModule)]
            for gm in graphs:
                try:
                    gm.graph.lint()
                except Exception as exc:
                    print(f"expected: {EXPECTED}")
                    print(f"actual: {type(exc).__name__}: {exc}")
                    return 1
            print("not reproduced: every graph passes lint")
            return 0
        '''
    else:
        raise ValueError(f"unknown check kind {check.kind!r}")
    return head + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


def _paths_literal(paths: list[tuple[list[Any], Any]]) -> str:
    items = []
    for path, want in paths:
        items.append(f"({literal(path)}, {'ABSENT' if want is MISSING else literal(want)})")
    return "[" + ", ".join(items) + "]"


_MAIN = '''

if __name__ == "__main__":
    try:
        status = main()
    except Exception:
        traceback.print_exc()
        print("the repro itself failed to run (exit status 2)")
        status = 2
    sys.exit(status)
'''


def assemble(title: str, case: CaseCode, snippet: Snippet, check: Check) -> str:
    """The complete script."""
    imports = ["import copy", "import sys", "import traceback", "import torch", "import torch.fx"]
    if check.kind == "structure":
        imports += ["import json", "import types"]
    if check.kind == "outputs":
        imports.append("import math")
    helper_imports: list[str] = []
    helpers = ""
    required = ""
    strip = not case.future_annotations
    if snippet.requires:
        text_imports, required, _ = inline([], names=snippet.requires, strip_annotations=strip)
        helper_imports += text_imports.splitlines()
    if check.kind == "structure":
        wanted = list(snippet.helpers)
        if snippet.structure is None and snippet.fingerprint is not None:
            wanted.append(snippet.fingerprint)
        if wanted:
            text_imports, helpers, _ = inline([], names=wanted, strip_annotations=strip)
            helper_imports += text_imports.splitlines()
        if snippet.structure is not None:
            helpers += "\n\n\n" + snippet.structure
        else:
            assert snippet.fingerprint is not None
            helpers += f"\n\n\nstructure = {snippet.fingerprint[1]}\n"
    elif check.kind == "constraints":
        text_imports, helpers, _ = inline([], names=[("conform.oracles.partition_z3", "violations")],
                                         strip_annotations=strip)
        helper_imports += text_imports.splitlines()
    lines = [*imports, *case.imports.splitlines(), *snippet.imports, *helper_imports]
    case_text = render_case(dataclasses.replace(case, imports="")) if case.future_annotations else case.body
    parts = [
        f'"""{_docstring(title)}\n\nA standalone reproduction: it imports torch only. Run it with\n'
        "``python <this file>``; it prints what was expected and what happened, and exits with\n"
        'status 1 while the bug shows, 0 once it does not."""\n',
        *(["from __future__ import annotations\n"] if case.future_annotations else []),
        _import_block(lines),
        "",
        "",
        "# ---- the case " + "-" * 73,
        "",
        _strip_future(case_text).strip("\n"),
        "",
        "",
        "# ---- the transform " + "-" * 68,
        "",
        *([required.strip("\n"), "", ""] if required else []),
        snippet.code.strip("\n"),
    ]
    if helpers:
        parts += ["", "", "# ---- what the check reads " + "-" * 61, "", f"ABSENT = {ABSENT!r}", "",
                  helpers.strip("\n")]
    parts += ["", "", "# ---- the check " + "-" * 72, _COMMON.rstrip()]
    if check.kind == "outputs":
        parts.append(_COMPARE.rstrip())
    if check.kind == "structure":
        parts.append(_STRUCTURE.rstrip())
    parts += [_check_body(check).rstrip(), _MAIN.rstrip(), ""]
    return "\n".join(parts)


def _import_block(lines: list[str]) -> str:
    ordered = sorted({line for line in lines if line.strip()}, key=import_order)
    groups: dict[int, list[str]] = {}
    for line in ordered:
        groups.setdefault(import_order(line)[0], []).append(line)
    return "\n\n".join("\n".join(group) for _, group in sorted(groups.items()))


def _strip_future(text: str) -> str:
    return text.replace("from __future__ import annotations\n", "")


def _docstring(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")


def jsonable(value: Any) -> Any:
    """The JSON form the engine compares fingerprints in."""
    return json.loads(json.dumps(value, default=repr, sort_keys=True))
