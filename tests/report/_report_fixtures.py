"""Builders for the report's inputs (outcomes, summary, history, coverage) and a small HTML
reader for the tests."""

from __future__ import annotations

import html.parser
import random
from pathlib import Path
from typing import Any

from conform import record
from conform.outcome import Mismatch, Outcome, Stage, Symptom, Verdict


def outcome(i: int, *, verdict: Verdict = Verdict.PASS, transform: str = "split_module",
            source: str = "random", t: float | None = None, place: str = "outputs",
            stage: Stage = Stage.COMPARE, symptom: Symptom = Symptom.EAGER_MISMATCH,
            exception: str | None = None, message: str = "", known_id: str | None = None,
            notes: dict[str, Any] | None = None, repro: str | None = None) -> Outcome:
    notes = dict(notes or {})
    if t is not None:
        notes["t"] = t
    divergent = verdict in (Verdict.FAIL, Verdict.KNOWN)
    return Outcome(
        key=f"{i:016x}", case_id=f"random-{i}", source=source, transform=transform, device="cpu",
        verdict=verdict, stage=stage if divergent else None, symptom=symptom if divergent else None,
        message=message or (f"the module upstream produced computes different outputs ({i})" if divergent else ""),
        exception=exception, place=place if divergent else None, node="add_1" if divergent else None,
        diffs=[Mismatch("eager", "upstream", "outputs", f"max abs diff {i}.5 at [0, 1]", "add_1")] if divergent else [],
        known_id=known_id, spec={"n": i}, params={"keep": i % 2 == 0}, seed=i, repro=repro, notes=notes,
    )


def campaign(n: int = 200, *, seed: int = 0) -> list[Outcome]:
    """Mostly passes, a few new and known divergences of a handful of origins, over 60 s."""
    rng = random.Random(seed)
    outcomes = []
    for i in range(n):
        t = 60.0 * i / n
        roll = rng.random()
        if roll < 0.04:
            outcomes.append(outcome(i, verdict=Verdict.FAIL, transform=rng.choice(["split_module", "normalize"]),
                                    place=rng.choice(["upstream:outputs", "reference:outputs"]), t=t))
        elif roll < 0.08:
            outcomes.append(outcome(i, verdict=Verdict.KNOWN, transform="normalize", place="fingerprint",
                                    symptom=Symptom.IMPL_DIVERGENCE, known_id="normalize-known", t=t))
        elif roll < 0.1:
            outcomes.append(outcome(i, verdict=Verdict.SKIP, t=t))
        else:
            outcomes.append(outcome(i, transform=rng.choice(["split_module", "normalize", "shape_prop"]),
                                    source=rng.choice(["random", "opinfo"]), t=t))
    return outcomes


KNOWN = {
    "normalize-known": {"id": "normalize-known", "transform": "normalize", "kind": "upstream-bug",
                        "reason": "upstream drops a kwarg", "issue": "https://github.com/pytorch/pytorch/issues/12345",
                        "seen": 3, "stale": False},
    "split-unfiled": {"id": "split-unfiled", "transform": "split_module", "kind": "upstream-bug",
                      "reason": "upstream loses an in-place write", "issue": "unfiled", "seen": 2, "stale": None},
    "split-unreached": {"id": "split-unreached", "transform": "split_module", "kind": "upstream-bug",
                        "reason": "never reached", "issue": None, "seen": 0, "stale": True,
                        "stale_reason": "the witness now passes"},
    "by-design": {"id": "by-design", "transform": "normalize", "kind": "by-design",
                  "reason": "deliberate", "issue": "javascript:alert(1)", "seen": 4, "stale": False},
    "fixed-upstream": {"id": "fixed-upstream", "transform": "normalize", "kind": "upstream-bug",
                       "reason": "reported by a pull request", "issue": "https://github.com/pytorch/pytorch/pull/678",
                       "seen": 1, "stale": False},
}


def summary(outcomes: list[Outcome], **extra: Any) -> dict[str, Any]:
    known = extra.pop("known", KNOWN)
    meta = {
        "duration_s": 60.0, "seed": 7, "workers": 2, "budget_s": 60.0,
        "environment": {"python": "3.11.7", "torch": "2.14.1", "platform": "Linux-x86_64", "devices": ["cpu"],
                        "fx_conform": "0.1.0"},
    }
    meta.update(extra)
    return record.summarize(outcomes, meta=meta, known_status=known)


def history(runs: int = 3) -> list[dict[str, Any]]:
    return [{"run_id": f"run{i}", "started": f"2026-12-0{i + 1}T10:00:00", "duration_s": 60.0,
             "cases": 100 + 10 * i,
             "counts": {"new": 3 - i, "known": 5, "pass": 400 + i, "skip": 2, "timeout": i, "crash": 0}}
            for i in range(runs)]


MODULE = '''\
import math


def reached(x):
    y = x + 1
    return y


def partly(x):
    if x > 0:
        return math.sqrt(x)
    return -x


def unrelated():
    return 0
'''


def coverage(tmp_path: Path) -> dict[str, Any]:
    """Coverage of a small module: ``reached`` fully, ``partly`` half, ``unrelated`` not measured."""
    upstream = tmp_path / "upstream_mod.py"
    upstream.write_text(MODULE)
    reference = tmp_path / "reference_mod.py"
    reference.write_text(MODULE)
    side = {"lines": [5, 6, 10, 11, 12], "reached": [5, 6, 10, 11], "series": [[0, 0.0], [10, 60.0], [60, 80.0]]}
    return {"split_module": {"upstream": {"file": str(upstream), **side},
                             "reference": {"file": str(reference), **side, "reached": [5, 6]}}}


class Page(html.parser.HTMLParser):
    """Ids, link targets, script bodies and text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []
        self.scripts: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in_script = False
        self.text_parts: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(a["id"] or "")
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"] or "")
        if a.get("src") is not None:
            self.sources.append(a["src"] or "")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        else:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())
