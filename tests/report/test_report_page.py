"""The HTML report: what a reader finds on the page, built from fixture data."""

from __future__ import annotations

import collections
import html
import re
import time
from pathlib import Path

import pytest
from _report_fixtures import KNOWN, Page, campaign, coverage, history, outcome, summary

from conform import report, report_triage
from conform.outcome import Outcome, Stage, Symptom, Verdict


def _write(tmp_path: Path, outcomes=None, **kwargs) -> tuple[str, Page]:
    outcomes = campaign() if outcomes is None else outcomes
    meta = kwargs.pop("summary", None) or summary(outcomes)
    path = report.write(tmp_path, outcomes, meta, **kwargs)
    text = path.read_text()
    return text, Page(text)


def test_metadata_is_shown_and_unknown_is_said_plainly(tmp_path: Path) -> None:
    outcomes = campaign()
    _, page = _write(tmp_path, outcomes)
    assert "torch 2.14.1" in page.text and "python 3.11.7" in page.text
    assert "duration 60.0 s" in page.text
    cases = len({o.spec["n"] for o in outcomes})
    assert f"distinct cases {cases}" in page.text and f"cases / s {cases / 60:.1f}" in page.text
    _, page = _write(tmp_path, outcomes, summary=summary(outcomes, shard=[2, 4], cases_per_s=12.5))
    assert "shard 2/4" in page.text and "cases / s 12.5" in page.text, "the recorded rate wins"
    bare = {"counts": {}, "cases": 3}
    _, page = _write(tmp_path, outcomes, summary=bare)
    assert "torch unknown" in page.text and "python unknown" in page.text and "duration unknown" in page.text
    assert "?" not in page.text


@pytest.mark.parametrize(("extra", "words"), [
    ({"interrupted": True}, "This run was interrupted"),
    ({"crashed": "the supervisor lost its store"}, "This run crashed: the supervisor lost its store"),
    ({"crashed": True}, "This run crashed."),
])
def test_an_incomplete_run_has_a_banner(tmp_path: Path, extra: dict, words: str) -> None:
    outcomes = campaign(50)
    text, page = _write(tmp_path, outcomes, summary=summary(outcomes, **extra))
    assert words in page.text and 'class="banner"' in text


def test_a_complete_run_has_no_banner(tmp_path: Path) -> None:
    text, _ = _write(tmp_path)
    assert 'class="banner"' not in text


def test_every_matrix_cell_links_to_its_outcomes(tmp_path: Path) -> None:
    outcomes = campaign()
    text, page = _write(tmp_path, outcomes)
    matrix = text[text.index('<table class="matrix">'):text.index("</table>", text.index('<table class="matrix">'))]
    cell_links = re.findall(r'<a class="cell" href="#([^"]+)"', matrix)
    assert len(cell_links) == len({(o.transform, o.source) for o in outcomes})
    assert set(cell_links) <= set(page.ids)
    anchors = [href[1:] for href in page.links if href.startswith("#")]
    assert set(anchors) <= set(page.ids), "every in-page link has a target"
    assert len(page.ids) == len(set(page.ids)), "ids are unique across the page (plots included)"


def test_new_divergences_come_before_known_ones(tmp_path: Path) -> None:
    text, _ = _write(tmp_path)
    verdicts = re.findall(r'<tbody id="origin-[0-9a-f]+" class="origin" data-verdict="(\w+)"', text)
    assert verdicts and "known" in verdicts and "new" in verdicts
    assert verdicts == sorted(verdicts, key=lambda v: v != "new")


def test_examples_are_capped_shrunk_first_with_diff_repro_and_replay(tmp_path: Path) -> None:
    (tmp_path / "repro").mkdir()
    items = [outcome(i, verdict=Verdict.FAIL, place="upstream:outputs") for i in range(30)]
    items.append(outcome(99, verdict=Verdict.FAIL, place="upstream:outputs", notes={"shrunk_from": items[0].key},
                         repro=f"repro/{99:016x}.py"))
    (tmp_path / "repro" / f"{99:016x}.py").write_text("import torch\nprint('shrunk case')\n")
    items.append(outcome(100, verdict=Verdict.FAIL, place="upstream:outputs", repro="../../etc/passwd"))
    text, page = _write(tmp_path, items)
    details = text[text.index('<tr class="body">'):]
    examples = re.findall(r'key <code>([0-9a-f]{16})</code>', details)
    cap = report_triage.EXAMPLES_PER_ORIGIN
    assert len(examples) == cap and examples[0] == f"{99:016x}", "capped, the shrunk case first"
    assert f"and {32 - cap} more: conform export --jsonl FILE --report {tmp_path}" in page.text
    assert f"conform replay {1:016x} --report {tmp_path} --repro {1:016x}.py" in page.text
    assert "shrunk from" in page.text and "max abs diff 99.5" in page.text
    assert f"conform replay {99:016x} --report {tmp_path}" in page.text
    assert f"repro/{99:016x}.py" in page.links
    assert not any("passwd" in link for link in page.links)
    assert '<span class="nb">print</span>' in text, "the repro source is highlighted inline"


def test_examples_show_the_side_and_what_was_raised(tmp_path: Path) -> None:
    import dataclasses

    crash = dataclasses.replace(outcome(1, verdict=Verdict.FAIL, place="upstream@split_module.py:9:f",
                                        stage=Stage.EXECUTE, symptom=Symptom.CRASH, exception="KeyError"),
                                side="upstream", error="'getitem_7'")
    older = outcome(2, verdict=Verdict.FAIL, place="reference:outputs")  # recorded without a side
    _, page = _write(tmp_path, [crash, older])
    assert "side upstream raised KeyError : 'getitem_7'" in page.text
    assert page.text.count(" raised ") == 1  # the older outcome has nothing to show
    assert report_triage.upstream_side(crash) and not report_triage.upstream_side(
        dataclasses.replace(crash, side="reference"))


def test_recorded_text_is_escaped_everywhere(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    items = [outcome(1, verdict=Verdict.FAIL, transform=evil, source=evil, message=evil, exception=evil, t=1.0),
             outcome(2, transform=evil, t=2.0)]
    text, page = _write(tmp_path, items, coverage={evil: {"upstream": {"file": evil, "lines": [1], "reached": [],
                                                                        "series": [[0, 1.0], [1, 2.0]]}}},
                        history=[{"run_id": evil, "started": evil, "cases": 1, "counts": {"new": 1}}] * 2)
    assert len(page.scripts) == 1, "only the page's own script"
    assert "alert" not in page.scripts[0]
    assert evil in page.text, "shown as text"
    assert "<img" not in text and "<script>alert" not in text


def test_plots_are_inline_svg_without_external_references(tmp_path: Path) -> None:
    text, page = _write(tmp_path, history=history(3), coverage=coverage(tmp_path))
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 3, "outcomes over time, coverage over time, history"
    for svg in svgs:
        assert "http" not in svg and "<image" not in svg and "<script" not in svg
    assert "outcomes so far, by verdict" in text and "distinct cases per run" in text
    assert "split_module (upstream)" in text
    assert not page.sources, "nothing is loaded from elsewhere"


def test_plots_need_their_data(tmp_path: Path) -> None:
    untimed = [outcome(i) for i in range(10)]
    text, _ = _write(tmp_path, untimed, history=history(1))
    assert "<svg" not in text and "Nothing to plot" in text


def test_plots_are_fast(tmp_path: Path) -> None:
    from conform import report_plots

    outcomes = campaign(5000)
    report_plots.outcomes_over_time(outcomes[:10])  # matplotlib's import is paid once per process
    started = time.perf_counter()
    assert report_plots.outcomes_over_time(outcomes) is not None
    assert report_plots.history(history(20)) is not None
    assert report_plots.coverage_over_time(coverage(tmp_path)) is not None
    assert time.perf_counter() - started < 5.0  # about 0.5 s on an idle core


def test_coverage_marks_reached_and_unreached_lines(tmp_path: Path) -> None:
    text, page = _write(tmp_path, coverage=coverage(tmp_path))
    assert "4 of 5 lines reached (80%)" in page.text and "2 of 5 lines reached (40%)" in page.text
    upstream = text[text.index('<details class="coverage" open>'):]
    upstream = upstream[:upstream.index("</details>")]
    marks = {int(n): mark for mark, n in re.findall(r'<span class="ln (\w*)"><span class="no">(\d+)</span>', upstream)}
    assert marks[10] == marks[11] == "hit" and marks[12] == "miss" and marks[4] == marks[9] == ""
    assert 5 not in marks and "2 lines, 2 of 2 measured reached" in page.text, "a reached stretch is one line"
    assert 16 not in marks, "only the functions the transform calls are listed"


def test_known_table_links_issues_and_lists_bugs_worth_filing(tmp_path: Path) -> None:
    text, page = _write(tmp_path)
    assert "https://github.com/pytorch/pytorch/issues/12345" in page.links
    assert "https://github.com/pytorch/pytorch/pull/678" in page.links and "PR #678" in page.text
    assert not any(link.startswith("javascript") for link in page.links)
    assert "javascript:alert(1)" in page.text, "a non-issue value is shown as text"
    filing = text[text.index('id="worth-filing"'):text.index("</section>", text.index('id="worth-filing"'))]
    assert "split-unfiled" in filing, "reached, upstream bug, unfiled"
    assert "split-unreached" not in filing and "normalize-known" not in filing and "by-design" not in filing
    assert "fixed-upstream" not in filing
    assert "upstream:outputs" in filing and "reference:outputs" not in filing, "new upstream-side origins"
    assert "4 of 5 registry entries were reached" in page.text
    assert "stale" in page.text and "the witness now passes" in page.text


def test_bug_reports_are_listed_with_relative_links(tmp_path: Path) -> None:
    (tmp_path / "bugs").mkdir()
    (tmp_path / "bugs" / "split-unfiled.md").write_text("# split_module loses a write\n\n<b>bold</b> body\n")
    (tmp_path / "bugs" / f"{7:016x}.md").write_text("# fuse drops a bias\n\n<i>new</i> body\n")
    (tmp_path / "bugs" / "notes.txt").write_text("not a bug report")
    text, page = _write(tmp_path)
    assert {"bugs/split-unfiled.md", f"bugs/{7:016x}.md"} <= set(page.links)
    # a new divergence's report is shown in the page (escaped); a known entry's is a link
    assert "fuse drops a bias" in page.text and "<i>new</i> body" in page.text
    assert "split_module loses a write" in page.text and "<b>bold</b> body" not in page.text
    assert "<i>new</i>" not in text and "<b>bold</b>" not in text and "notes.txt" not in text


def test_a_known_origin_shows_fewer_examples_than_a_new_one(tmp_path: Path) -> None:
    known = [outcome(i, verdict=Verdict.KNOWN, place="upstream:outputs") for i in range(20)]
    new = [outcome(100 + i, verdict=Verdict.FAIL, place="upstream:fingerprint") for i in range(20)]
    text, _ = _write(tmp_path, known + new)
    shown = set(re.findall(r'key <code>([0-9a-f]{16})</code>', text))
    assert len(shown & {o.key for o in known}) == report_triage.KNOWN_EXAMPLES_PER_ORIGIN
    assert len(shown & {o.key for o in new}) == report_triage.EXAMPLES_PER_ORIGIN


def test_a_large_run_renders_counts_not_rows(tmp_path: Path) -> None:
    outcomes = [outcome(i, verdict=Verdict.FAIL if i % 100 == 0 else Verdict.PASS, place=f"p{i % 700}", t=i / 100)
                for i in range(50_000)]
    started = time.perf_counter()
    text, page = _write(tmp_path, outcomes)
    elapsed = time.perf_counter() - started
    origins = len({o.origin for o in outcomes if o.is_divergence})
    assert text.count('class="origin"') == origins
    assert len(text) < 3_000_000 and elapsed < 20
    assert "49500" in page.text


def test_counts_follow_verdicts(tmp_path: Path) -> None:
    outcomes = campaign()
    _, page = _write(tmp_path, outcomes)
    counts = collections.Counter("new" if o.verdict is Verdict.FAIL else o.verdict.value for o in outcomes)
    for verdict, n in counts.items():
        assert f"{n} {verdict}" in page.text


def test_the_cli_rebuilds_a_report_with_its_metadata(tmp_path: Path) -> None:
    from conform import cli

    assert cli.main(["run", "--transform", "shape_prop", "--source", "samples", "--max-cases", "3",
                     "--report", str(tmp_path), "--device", "cpu", "--no-shrink"]) in (0, 1)
    (tmp_path / "index.html").unlink()
    assert cli.main(["report", "--report", str(tmp_path)]) in (0, 1)
    import torch

    page = Page((tmp_path / "index.html").read_text())
    assert f"torch {torch.__version__}" in page.text and "duration unknown" not in page.text


def test_known_entry_count_stage_symptom_in_triage(tmp_path: Path) -> None:
    items = [outcome(i, verdict=Verdict.KNOWN, known_id="normalize-known", stage=Stage.TRANSFORM_UPSTREAM,
                     symptom=Symptom.CRASH, exception="KeyError") for i in range(3)]
    text, _ = _write(tmp_path, items, summary=summary(items, known={"normalize-known": KNOWN["normalize-known"]}))
    row = text[text.index('<tr class="head">'):text.index("</tr>", text.index('<tr class="head">'))]
    for cell in ("transform-upstream", "crash", "known", "normalize-known", ">3<", "KeyError"):
        assert cell in row


def test_coverage_lists_the_lines_not_reached_and_folds_the_rest(tmp_path: Path) -> None:
    module = tmp_path / "documented.py"
    docstring = "\n".join(f"    line {i} of a long docstring" for i in range(30))
    body = "\n".join(f"    x = x + {i}" for i in range(20))
    module.write_text(f'def f(x):\n    """\n{docstring}\n    """\n{body}\n    return x + 1\n')
    body_lines = list(range(34, 54))
    last = 54
    text, page = _write(tmp_path, coverage={"t": {"upstream": {"file": str(module), "lines": [1, *body_lines, last],
                                                              "reached": [1, *body_lines], "series": []}}})
    assert '<span class="no">1</span>' in text, "a function's first line is always listed"
    assert "line 12 of a long docstring" not in page.text and "x = x + 3" not in page.text
    assert "50 lines, 18 of 18 measured reached" in page.text
    assert "x = x + 18" in page.text and "return x + 1" in page.text, "the line not reached, with context"


def test_the_page_reads_without_javascript(tmp_path: Path) -> None:
    outcomes = campaign()
    text, page = _write(tmp_path, outcomes)
    assert '<form id="triage-controls" class="controls" hidden>' in text, "controls only appear with the script"
    assert not re.search(r'<(tbody|tr|article|details)[^>]*\shidden', text), "no content starts hidden"
    by_origin: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.is_divergence:
            by_origin.setdefault(o.origin, []).append(o)
    for items in by_origin.values():
        cap = report_triage.EXAMPLES_PER_ORIGIN if any(o.verdict is Verdict.FAIL for o in items) \
            else report_triage.KNOWN_EXAMPLES_PER_ORIGIN
        shown = sum(f"key {o.key}" in page.text for o in items)
        assert shown == min(len(items), cap), "every example shown is in the HTML itself"
    policy = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1))
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
