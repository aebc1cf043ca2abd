"""Standalone repro scripts: one ``.py`` per divergence that rebuilds the case, applies the
transform with both implementations and prints what differs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conform import plugins
from conform.case import Case
from conform.outcome import Outcome

_TEMPLATE = '''\
"""Repro for a {transform} divergence ({stage} / {symptom}).

Case {case_id}, outcome key {key}.
{message}

Run: python {filename}
{applies}
"""

# ---- the case -------------------------------------------------------------------------
{case_source}

# ---- the check ------------------------------------------------------------------------
import sys

from conform import plugins
from conform.case import Case
from conform.engine import check

CASE = Case.from_json(json.loads({case_json!r}))
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


def render(outcome: Outcome, case: Case) -> str:
    """The repro script's text for ``outcome`` on ``case``."""
    devices = ("cpu", "cuda") if outcome.device == "cuda" else ("cpu",)
    source = case.source_code()
    if "import json" not in source:
        source = "import json\n" + source
    return _TEMPLATE.format(
        transform=outcome.transform,
        stage=outcome.stage.value if outcome.stage else "-",
        symptom=outcome.symptom.value if outcome.symptom else "-",
        case_id=outcome.case_id,
        key=outcome.key,
        message=_docstring_safe(textwrap.fill(outcome.message, 88)) if outcome.message else "",
        filename=f"{outcome.key}.py",
        case_source=source.rstrip() + "\n",
        case_json=json.dumps(case.to_json(), sort_keys=True),
        params_json=json.dumps(outcome.params, sort_keys=True),
        devices=devices,
        plugins=plugins.loaded(),
        applies=textwrap.fill(f"It rebuilds the case below, {_applies(outcome.transform)}, and prints the "
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
