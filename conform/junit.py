"""JUnit XML for CI: one test case per outcome origin.

A CI system shows a new divergence as a failed test (its message ends with the command that
replays it), a known divergence or an unsupported case as a skipped one, and a transform
that conformed as a passed one. ``classname`` is the transform, ``name`` the origin
(transform|stage|symptom|exception|place).
"""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conform import jsonl
from conform.outcome import Outcome, Verdict

# characters XML 1.0 cannot carry, even escaped
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_RANK = {Verdict.FAIL: 0, Verdict.KNOWN: 1, Verdict.SKIP: 2, Verdict.PASS: 3}


def _text(value: str) -> str:
    return _INVALID_XML.sub("\N{REPLACEMENT CHARACTER}", value)


def build(outcomes: Iterable[Outcome], summary: dict[str, Any], *, report_dir: Path | str = "reports") -> ET.Element:
    """The ``<testsuites>`` element for ``outcomes``."""
    groups: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in outcomes:
        groups[o.origin].append(o)
    suite = ET.Element("testsuite", name="fx-conform")
    counts = collections.Counter[str]()
    for origin, items in sorted(groups.items()):
        worst = min(items, key=lambda o: _RANK[o.verdict])
        case = ET.SubElement(suite, "testcase", classname=_text(worst.transform), name=_text(origin),
                             time=f"{sum(o.duration_s for o in items):.3f}")
        replay = f"conform replay {worst.key} --report {report_dir}{worst.replay_options}"
        if worst.verdict is Verdict.FAIL:
            failures = [o for o in items if o.verdict is Verdict.FAIL]
            failure = ET.SubElement(case, "failure", type=_text(worst.symptom.value if worst.symptom else "divergence"),
                                    message=_text(f"{len(failures)} new divergence(s) of {origin}; replay: {replay}"))
            failure.text = _text(worst.describe().replace(f"replay: conform replay {worst.key}{worst.replay_options}", f"replay: {replay}"))
            counts["failures"] += 1
        elif worst.verdict is Verdict.KNOWN:
            ET.SubElement(case, "skipped", message=_text(f"known divergence {worst.known_id}; replay: {replay}"))
            counts["skipped"] += 1
        elif worst.verdict is Verdict.SKIP:
            ET.SubElement(case, "skipped", message=_text(f"not applicable: {worst.message}".rstrip(": ")))
            counts["skipped"] += 1
        ET.SubElement(case, "system-out").text = _text(f"{len(items)} outcome(s); first case {worst.case_id}")
    suite.set("tests", str(len(groups)))
    suite.set("failures", str(counts["failures"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("errors", "0")
    suite.set("time", f"{float(summary.get('duration_s') or 0.0):.3f}")
    root = ET.Element("testsuites", name="fx-conform", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"), skipped=suite.get("skipped", "0"), errors="0")
    root.append(suite)
    return root


def write_junit(path: Path | str, outcomes: Iterable[Outcome], summary: dict[str, Any], *,
                report_dir: Path | str = "reports") -> Path:
    """Write the JUnit XML for ``outcomes`` to ``path`` (atomically); returns the path.

    Args:
        path: the XML file.
        outcomes: the run's outcomes.
        summary: the run's summary (its ``duration_s`` becomes the suite's time).
        report_dir: the report directory named in each replay command.
    """
    path = Path(path)
    root = build(outcomes, summary, report_dir=report_dir)
    ET.indent(root)
    with jsonl.atomic_writer(path) as fh:
        fh.write(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
    return path
