"""Repro scripts: one ``.py`` per divergence that builds the case with its own
``build_case()``, applies the transform with both implementations and prints what differs.

The engine checks the module the script's ``build_case()`` returns (through
:meth:`conform.case.Case.with_builder`), so editing that function (shrinking the module by
hand, changing an input) changes what is checked. For a torch-only script to attach to an
upstream issue, see :func:`conform.bugreport.standalone_repro`.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

from conform import plugins
from conform.bugs.case_code import CaseCode, case_code
from conform.case import Case
from conform.outcome import Outcome

log = logging.getLogger(__name__)

_TEMPLATE = '''\
"""Repro for a {transform} divergence ({stage} / {symptom}).

Case {case_id}, outcome key {key}.
{message}

Run: python {filename}
{applies}
"""
{future}
import json
import sys

{case_imports}

# ---- the case -------------------------------------------------------------------------
{case_source}

# ---- the check ------------------------------------------------------------------------
from conform import plugins
from conform.case import Case
from conform.engine import check

CASE = Case.from_json(json.loads({case_json!r})).with_builder(
    build_case, stochastic=STOCHASTIC, concrete_args=CONCRETE_ARGS, leaf_modules=LEAF_MODULES)
PARAMS = json.loads({params_json!r})
DEVICES = {devices!r}
#: the plugins (and passes of your own) the campaign had loaded: the transform may be one of theirs
PLUGINS = {plugins!r}


if __name__ == "__main__":
    plugins.load(PLUGINS)
    module, args, kwargs = build_case()
    print("module:", type(module).__name__, "args:", [getattr(a, "shape", a) for a in args])
    outcomes = check(CASE, {transform!r}, params=PARAMS, devices=DEVICES)
    for outcome in outcomes:
        print(outcome.describe())
        print()
    sys.exit(1 if any(o.verdict.value in ("fail", "known") for o in outcomes) else 0)
'''


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")


def _case_section(case: Case) -> CaseCode:
    """The case's ``build_case()`` section: standalone where the source allows, else the
    source's own code with the tracing constants the check reads."""
    try:
        return case_code(case)
    except Exception as exc:  # a case that no longer builds still gets a script to debug it with
        log.info("case %s written from its source only: %s: %s", case.id, type(exc).__name__, exc)
        body = case.source_code().rstrip() + "\n"
        for name, default in (("SEED", case.seed), ("CONCRETE_ARGS", None), ("STOCHASTIC", False),
                              ("LEAF_MODULES", ())):
            if f"\n{name} =" not in "\n" + body:
                body += f"{name} = {default!r}\n"
        return CaseCode("", body, False, False)


def render(outcome: Outcome, case: Case) -> str:
    """The repro script's text for ``outcome`` on ``case``."""
    devices = ("cpu", "cuda") if outcome.device == "cuda" else ("cpu",)
    section = _case_section(case)
    return _TEMPLATE.format(
        transform=outcome.transform,
        stage=outcome.stage.value if outcome.stage else "-",
        symptom=outcome.symptom.value if outcome.symptom else "-",
        case_id=outcome.case_id,
        key=outcome.key,
        message=_docstring_safe(textwrap.fill(outcome.message, 88)) if outcome.message else "",
        filename=f"{outcome.key}.py",
        future="\nfrom __future__ import annotations\n" if section.future_annotations else "",
        case_imports=section.imports,
        case_source=section.body.rstrip() + "\n",
        case_json=json.dumps(case.to_json(), sort_keys=True),
        params_json=json.dumps(outcome.params, sort_keys=True),
        devices=devices,
        plugins=plugins.loaded(),
        applies=textwrap.fill(f"It builds the case with build_case() below (edit it to try a variant), {_applies(outcome.transform)}, and prints the "
                              "outcome; exit status 1 while the divergence is there.", 88),
    )


def _applies(transform: str) -> str:
    from conform.registry import transforms

    row = transforms().get(transform)
    if row is not None and row.one_sided:
        return f"applies the pass {transform} and compares it with the eager module"
    return f"applies {transform} with upstream torch.fx and with the fx-conform reference"


def write(outcome: Outcome, case: Case, directory: Path) -> Path:
    """Write the repro for ``outcome`` into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{outcome.key}.py"
    path.write_text(render(outcome, case))
    return path
