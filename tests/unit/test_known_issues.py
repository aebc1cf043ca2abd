"""Every known divergence names the PyTorch report of its bug, or says there is none."""

from __future__ import annotations

import dataclasses
import re

import pytest

from conform.cli import main
from conform.known import KNOWN, KnownDivergence

ISSUE_URL = re.compile(r"https://github\.com/pytorch/pytorch/(issues|pull)/\d+")


@pytest.mark.parametrize("entry", KNOWN, ids=[e.id for e in KNOWN])
def test_issue_is_a_pytorch_url_or_unfiled(entry: KnownDivergence) -> None:
    assert entry.issue == "unfiled" or (entry.issue is not None and ISSUE_URL.fullmatch(entry.issue)), (
        f"{entry.id}: issue must be a https://github.com/pytorch/pytorch/issues/<N> (or /pull/<N>) URL "
        f"or 'unfiled', got {entry.issue!r}"
    )


def test_report_summaries_carry_the_issue() -> None:
    assert [e.to_json()["issue"] for e in KNOWN] == [e.issue for e in KNOWN]


def test_list_known_shows_each_entrys_issue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "known"]) == 0
    lines = {line.split("  ", 1)[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == {e.id for e in KNOWN}
    for entry in KNOWN:
        assert lines[entry.id].endswith(f"  ({entry.issue})"), lines[entry.id]


def test_list_known_says_unfiled_for_an_entry_without_issue(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import conform.known as known

    bare = dataclasses.replace(KNOWN[0], id="without-issue", issue=None)
    monkeypatch.setattr(known, "KNOWN", (bare,))
    assert main(["list", "known"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("  (unfiled)")
