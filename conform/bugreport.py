"""Bug reports for upstream: one markdown file per upstream bug a campaign found, ready to
paste into a PyTorch GitHub issue, each with a standalone repro.

A standalone repro imports torch and the upstream transform only (no fx-conform, no
reference): it embeds the case's ``build_case()``, calls the transform the way the registry
row's driver does for the recorded parameters, and checks the recorded symptom: the
exception type for a crash, ``torch.testing.assert_close`` against the eager module for a
wrong result, an explicit assertion on the structure for a structural divergence (the
expected value is what the reference produced, written as a literal). It exits 1 while the
bug shows and 0 once it does not.

Example::

    >>> from conform.bugreport import standalone_repro
    >>> script = standalone_repro(outcome, Case(outcome.source, outcome.spec, outcome.seed))
    >>> Path("repro.py").write_text(script)   # python repro.py -> exit status 1
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

import torch

from conform import known
from conform.bugs.case_code import CaseCode, case_code
from conform.bugs.case_code import render as render_case
from conform.bugs.inline import InlineError
from conform.bugs.script import MISSING, Check, assemble, jsonable
from conform.bugs.transforms import Unsupported, snippet
from conform.case import Case
from conform.implementations import Implementation
from conform.outcome import Outcome, Stage, Symptom, Verdict
from conform.registry import get

log = logging.getLogger(__name__)

BUGS = "bugs"
#: Structural checks assert at most this many differing paths.
MAX_PATHS = 4
#: Fingerprint parts a standalone script does not describe (they need fx-conform's own
#: bookkeeping of the partitioner's run).
_UNDESCRIBED = {"partition": ("latencies", "order_sensitive")}


def api_name(transform: str) -> str:
    """The upstream callable a row exercises, as a dotted name."""
    basename, _, attr = get(transform).target.partition(":")
    return f"{Implementation('upstream').module_path(basename)}.{attr}"


def check_for(outcome: Outcome, case: Case) -> Check | None:
    """The symptom a standalone script can check for ``outcome``, or None when there is none
    to show with upstream alone (the reference is the side that fails, a device finding)."""
    if outcome.device != "cpu" or outcome.stage is None:
        return None
    api = api_name(outcome.transform).rpartition(".")[2]
    stage, symptom, place = outcome.stage, outcome.symptom, outcome.place or ""
    same = "the transformed module computes what the eager module computes"
    if stage is Stage.TRANSFORM_UPSTREAM and symptom is Symptom.CRASH and outcome.exception:
        return Check("raises", f"{api} succeeds", exception=outcome.exception)
    if stage is Stage.TRANSFORM_UPSTREAM and symptom is Symptom.INVALID_GRAPH:
        return Check("lint", "every graph the transform produces passes Graph.lint()")
    if stage is Stage.EXECUTE and symptom is Symptom.CRASH and place.startswith("upstream@") and outcome.exception:
        return Check("run-raises", "the transformed module runs like the eager module",
                     exception=outcome.exception)
    if stage is Stage.COMPARE and symptom is Symptom.EAGER_MISMATCH and place.startswith("upstream:"):
        return Check("outputs", same)
    if stage is Stage.COMPARE and symptom is Symptom.IMPL_DIVERGENCE:
        if place == "outputs":
            return Check("outputs", same)
        if place == "exception-type" and outcome.diffs:
            reference, raised = _exception_types(outcome.diffs[0])
            if raised:
                return Check("raises", f"{api} rejects the case with a clear error, as the reference "
                                       f"implementation does ({reference})", exception=raised)
        if place == "fingerprint":
            paths = structure_paths(outcome, case)
            return Check("structure", "", paths=paths) if paths else None
    if (stage is Stage.TRANSFORM_REFERENCE and symptom is Symptom.CRASH
            and outcome.exception == "PartitionConstraintViolation"):
        return Check("constraints", "every partition has a device and fits its device's memory")
    return None


def _exception_types(mismatch: Any) -> tuple[str, str]:
    """``(reference's, upstream's)`` exception types of an exception-type mismatch: from its
    ``exception`` entry, or (a record from before entries) from the rendered detail."""
    entry = next((e for e in mismatch.entries if e.path == "exception"), None)
    if entry is not None and {mismatch.left, mismatch.right} == {"reference", "upstream"}:
        values = {mismatch.left: entry.left, mismatch.right: entry.right}
        return values["reference"] or "", values["upstream"] or ""
    reference, _, upstream = mismatch.detail.partition("\nvs\n")
    return reference.strip(), upstream.partition(":")[0].strip()


def structure_paths(outcome: Outcome, case: Case) -> list[tuple[list[Any], Any]]:
    """Where upstream's structural fingerprint differs from the reference's, with the
    reference's value (or :data:`MISSING`) at each path; at most :data:`MAX_PATHS`."""
    from conform import engine

    prepared = engine.prepare(case)
    if not isinstance(prepared, engine.Prepared):
        return []
    row = get(outcome.transform)
    sides = {impl: engine.apply(row, impl, prepared, outcome.params, run=False) for impl in ("upstream", "reference")}
    if any(s.applied is None or s.fingerprint is None for s in sides.values()):
        return []
    found: list[tuple[list[Any], Any]] = []
    _walk(jsonable(sides["upstream"].fingerprint), jsonable(sides["reference"].fingerprint), [], found)
    skip = _UNDESCRIBED.get(outcome.transform, ())
    return [(path, want) for path, want in found if not (path and path[0] in skip)][:MAX_PATHS]


def _walk(up: Any, ref: Any, path: list[Any], out: list[tuple[list[Any], Any]]) -> None:
    if isinstance(up, dict) and isinstance(ref, dict):
        for key in dict.fromkeys([*up, *ref]):
            if key not in up:
                out.append(([*path, key], ref[key]))
            elif key not in ref:
                out.append(([*path, key], MISSING))
            else:
                _walk(up[key], ref[key], [*path, key], out)
        return
    if isinstance(up, list) and isinstance(ref, list) and len(up) == len(ref):
        for index, (a, b) in enumerate(zip(up, ref)):
            _walk(a, b, [*path, index], out)
        return
    if up != ref:
        out.append((path, ref))


_SYMPTOMS = {
    Symptom.CRASH: "raises",
    Symptom.EAGER_MISMATCH: "the transformed module computes different outputs than the eager module",
    Symptom.IMPL_DIVERGENCE: "differs from a conforming implementation",
    Symptom.INVALID_GRAPH: "produces a graph that fails lint",
    Symptom.TIMEOUT: "does not finish",
}


def title(outcome: Outcome) -> str:
    """A one-line issue title."""
    api = api_name(outcome.transform)
    entry = known.by_id().get(outcome.known_id or "")
    if entry is not None:
        text = entry.reason.split(". ")[0].split("; ")[0]
    else:
        text = (outcome.message.splitlines() or [""])[0] or _SYMPTOMS.get(outcome.symptom, "diverges")
    text = text if len(text) <= 140 else text[:137] + "..."
    return f"[fx] {api}: {text}"


def _case_section(case: Case) -> CaseCode | None:
    try:
        return case_code(case)
    except InlineError as exc:
        log.info("case %s cannot be written standalone: %s", case.id, exc)
        return None


def standalone_repro(outcome: Outcome, case: Case) -> str | None:
    """A torch-only script reproducing ``outcome`` on ``case``, or None when the symptom
    cannot be shown with upstream alone or the case cannot be written without fx-conform.

    Args:
        outcome: a divergence (new, or known of kind upstream-bug).
        case: the case it was found on.

    Returns:
        The script's text: ``python script.py`` exits 1 while the bug shows, 0 once it
        does not.
    """
    return _repro(outcome, case)[0]


def _repro(outcome: Outcome, case: Case) -> tuple[str | None, Check | None]:
    code = _case_section(case)
    if code is None or not code.standalone:
        return None, None
    check = check_for(outcome, case)
    if check is None:
        return None, None
    try:
        part = snippet(outcome.transform, outcome.params, case)
    except Unsupported as exc:
        log.info("no standalone snippet for %s: %s", outcome.transform, exc)
        return None, None
    if check.kind == "structure" and part.fingerprint is None and part.structure is None:
        return None, None
    try:
        return assemble(title(outcome), code, part, check), check
    except InlineError as exc:
        log.info("the check of %s cannot be written standalone: %s", outcome.key, exc)
        return None, None


# --- the markdown reports ----------------------------------------------------------------------

_PREFERENCE = {"raises": 0, "run-raises": 1, "outputs": 2, "constraints": 3, "lint": 4, "structure": 5}


def _is_upstream_bug(outcome: Outcome) -> bool:
    if outcome.verdict is Verdict.FAIL:
        # a new divergence that blames upstream's side: not a case that fails on its own
        # (transform "-"), a timeout or a lost worker, or the reference's side alone
        if outcome.transform == "-" or outcome.symptom is Symptom.TIMEOUT:
            return False
        place = outcome.place or ""
        if place.startswith("worker:") or outcome.stage is Stage.TRANSFORM_REFERENCE:
            return False
        return (outcome.stage is Stage.TRANSFORM_UPSTREAM or outcome.symptom is Symptom.IMPL_DIVERGENCE
                or place.startswith("upstream"))
    if outcome.verdict is Verdict.KNOWN:
        entry = known.by_id().get(outcome.known_id or "")
        return entry is not None and entry.kind is known.Kind.UPSTREAM_BUG
    return False


def _rank(outcome: Outcome) -> tuple[int, int, int]:
    stage, symptom = outcome.stage, outcome.symptom
    if stage is Stage.TRANSFORM_UPSTREAM or stage is Stage.EXECUTE:
        kind = 0
    elif symptom is Symptom.EAGER_MISMATCH or outcome.place == "outputs":
        kind = 2
    else:
        kind = 5
    return (0 if outcome.notes.get("shrunk_from") else 1, kind, len(json.dumps(outcome.spec, default=repr)))


def environment() -> str:
    cuda = torch.version.cuda or "none"
    return (f"- torch {torch.__version__} (CUDA {cuda})\n- Python {platform.python_version()}\n"
            f"- {platform.platform()}")


def markdown(outcome: Outcome, case: Case, script: str | None, check: Check | None = None) -> str:
    """The issue text for ``outcome``; ``script`` and ``check`` are its standalone repro
    and what the repro checks, when there is one."""
    entry = known.by_id().get(outcome.known_id or "")
    lines = [f"# {title(outcome)}", "", "## Environment", "", environment(), ""]
    if entry is not None:
        lines += ["## Known divergence", "", f"`{entry.id}` ({entry.kind.value}): {entry.reason}", ""]
        if entry.issue:
            lines += [f"Upstream issue: {entry.issue}", ""]
    stage = outcome.stage.value if outcome.stage else "-"
    symptom = outcome.symptom.value if outcome.symptom else "-"
    lines += ["## What goes wrong", "", f"`{api_name(outcome.transform)}` ({stage} / {symptom}) on case "
              f"`{outcome.case_id}` with parameters `{json.dumps(outcome.params, sort_keys=True)}`.", ""]
    code = _case_section(case)
    module = render_case(code) if code is not None else case.source_code()
    lines += ["## Module", "", "```python", module.rstrip(), "```", ""]
    if script is not None:
        lines += ["## Repro", "", "Torch only; exits 1 while the bug shows, 0 once it does not.", "",
                  "```python", script.rstrip(), "```", ""]
    else:
        lines += ["## Repro", "", "No standalone script: the symptom cannot be shown with upstream alone, or "
                  "the case cannot be written without fx-conform. Replay it with "
                  f"`conform replay {outcome.key}`.", ""]
    expected = _expected(check)
    lines += ["## Expected", "", expected, "", "## Actual", "", "```", _actual(outcome, check), "```", ""]
    return "\n".join(lines)


def _expected(check: Check | None) -> str:
    if check is None:
        return "Upstream agrees with the eager module and with the reference implementation."
    if check.kind == "structure":
        items = [f"- `{'.'.join(map(str, path))}` = "
                 f"{'(absent)' if want is MISSING else '`' + json.dumps(want) + '`'}" for path, want in check.paths]
        return "As the reference implementation produces it:\n\n" + "\n".join(items)
    return check.expected[:1].upper() + check.expected[1:] + "."


def _actual(outcome: Outcome, check: Check | None) -> str:
    message = outcome.message
    if check is not None and check.kind == "constraints":
        # the reference reproduces upstream's partitions; its oracle names what they break
        broken = message.partition("constraints: ")[2].rpartition(" (the upstream")[0] or message
        message = f"upstream's partitions break constraints: {broken}"
    parts = [message, *(d.render() for d in outcome.diffs)]
    return "\n".join(p for p in parts if p).replace("```", "'''")


def write_bug_reports(report_dir: Path, outcomes: list[Outcome]) -> list[Path]:
    """Write ``bugs/<known id or outcome key>.md`` (and the repro beside it as ``.py``) for
    every upstream-bug origin among ``outcomes``; return the markdown paths.

    One file per known entry of kind upstream-bug and per new origin, from its shrunk
    example when there is one, else from the smallest spec.
    """
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.is_divergence and _is_upstream_bug(outcome):
            groups.setdefault(outcome.known_id or outcome.origin, []).append(outcome)
    written: list[Path] = []
    directory = Path(report_dir) / BUGS
    for old in [*directory.glob("*.md"), *directory.glob("*.py")] if directory.is_dir() else []:
        old.unlink()  # reports of an earlier run in the same directory
    for name, items in sorted(groups.items()):
        chosen, script, check = None, None, None
        for outcome in sorted(items, key=_rank)[:3]:
            case = Case(outcome.source, outcome.spec, outcome.seed)
            try:
                script, check = _repro(outcome, case)
            except Exception as exc:  # a case that no longer builds: report without a script
                log.warning("no standalone repro for %s: %s: %s", outcome.key, type(exc).__name__, exc)
                script, check = None, None
            chosen = chosen or outcome
            if script is not None:
                chosen = outcome
                break
        assert chosen is not None
        stem = chosen.known_id or chosen.key
        case = Case(chosen.source, chosen.spec, chosen.seed)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            text = markdown(chosen, case, script, check)
        except Exception as exc:
            log.warning("cannot describe %s: %s: %s", name, type(exc).__name__, exc)
            continue
        path = directory / f"{stem}.md"
        path.write_text(text, encoding="utf-8")
        if script is not None:
            (directory / f"{stem}.py").write_text(script, encoding="utf-8")
        written.append(path)
    return written
