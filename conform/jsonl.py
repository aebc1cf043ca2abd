"""The JSONL interchange format: one outcome per line, every field, the case's spec included.

``conform export --jsonl FILE`` writes it; ``conform report --from FILE`` and a
``results.jsonl`` left in a report directory by an older fx-conform are read with
:func:`read_jsonl`, which checks every field's type. A truncated last line (a writer that
stopped mid-write) is skipped with a warning; any other malformed line is a
:class:`~conform.errors.UsageError` naming ``file:line`` and what was expected.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conform.errors import UsageError
from conform.outcome import SIDES, DiffEntry, Mismatch, Outcome, Stage, Symptom, Verdict

Warn = Callable[[str], None]

_STR, _OPT_STR = (str,), (str, type(None))
# field -> (accepted types, required); ``spec`` is any JSON value
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "key": (_STR, True),
    "case_id": (_STR, True),
    "source": (_STR, True),
    "transform": (_STR, True),
    "device": (_STR, True),
    "verdict": (_STR, True),
    "stage": (_OPT_STR, False),
    "symptom": (_OPT_STR, False),
    "message": (_STR, False),
    "exception": (_OPT_STR, False),
    "error": (_OPT_STR, False),
    "side": (_OPT_STR, False),
    "place": (_OPT_STR, False),
    "node": (_OPT_STR, False),
    "diffs": ((list,), False),
    "known_id": (_OPT_STR, False),
    "params": ((dict,), False),
    "seed": ((int,), False),
    "repro": (_OPT_STR, False),
    "duration_s": ((int, float), False),
    "notes": ((dict,), False),
    "origin": (_STR, False),
}
_DIFF_FIELDS = {"left": _STR, "right": _STR, "what": _STR, "detail": _STR, "node": _OPT_STR, "entries": (list,)}
_ENTRY_FIELDS = {"path": _STR, "left": _OPT_STR, "right": _OPT_STR}
_TYPE_NAMES = {str: "a string", type(None): "null", list: "a list", dict: "an object", int: "an integer",
               float: "a number"}


def _stderr(message: str) -> None:
    print(f"conform: warning: {message}", file=sys.stderr)


def _expected(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false are not integers here
        return bool in types
    return isinstance(value, types)


def outcome_from_record(data: Any, where: str) -> Outcome:
    """An :class:`Outcome` from one decoded record, every field's type checked.

    Raises:
        UsageError: naming ``where`` (``file:line``) and what was expected.
    """
    def bad(problem: str) -> UsageError:
        return UsageError(f"{where}: {problem}; expected one JSON object per line with the fields "
                          "`conform export --jsonl` writes")

    if not isinstance(data, dict):
        raise bad(f"the record is {_kind(data)}, not an outcome object")
    for name, (types, required) in _FIELDS.items():
        if name not in data:
            if required:
                raise bad(f"field {name!r} is missing")
            continue
        if not _check_type(data[name], types):
            raise bad(f"field {name!r} is {_kind(data[name])}, expected {_expected(types)}")
    if not data["key"]:
        raise bad("field 'key' is empty")
    for name, enum in (("verdict", Verdict), ("stage", Stage), ("symptom", Symptom)):
        value = data.get(name)
        if value is not None and value not in {e.value for e in enum}:
            raise bad(f"field {name!r} is {value!r}, expected one of {', '.join(e.value for e in enum)}")
    if data.get("side") is not None and data["side"] not in SIDES:
        raise bad(f"field 'side' is {data['side']!r}, expected null or one of {', '.join(SIDES)}")
    if "spec" not in data:
        raise bad("field 'spec' is missing")
    diffs = []
    for i, diff in enumerate(data.get("diffs") or []):
        if not isinstance(diff, dict):
            raise bad(f"diffs[{i}] is {_kind(diff)}, expected an object")
        for name, types in _DIFF_FIELDS.items():
            if name not in diff and name not in ("node", "entries"):  # older files have no entries
                raise bad(f"diffs[{i}] has no field {name!r}")
            if name in diff and not _check_type(diff[name], types):
                raise bad(f"diffs[{i}].{name} is {_kind(diff[name])}, expected {_expected(types)}")
        entries = []
        for j, entry in enumerate(diff.get("entries") or []):
            at = f"diffs[{i}].entries[{j}]"
            if not isinstance(entry, dict):
                raise bad(f"{at} is {_kind(entry)}, expected an object")
            for name, types in _ENTRY_FIELDS.items():
                if name == "path" and name not in entry:
                    raise bad(f"{at} has no field 'path'")
                if name in entry and not _check_type(entry[name], types):
                    raise bad(f"{at}.{name} is {_kind(entry[name])}, expected {_expected(types)}")
            entries.append(DiffEntry(**{k: entry[k] for k in _ENTRY_FIELDS if k in entry}))
        fields = {k: diff[k] for k in _DIFF_FIELDS if k in diff and k != "entries"}
        diffs.append(Mismatch(**fields, entries=entries))
    outcome = Outcome.from_json({**data, "diffs": []})
    outcome.diffs = diffs
    if "origin" in data and data["origin"] != outcome.origin:
        raise bad(f"field 'origin' is {data['origin']!r} but the record's fields give {outcome.origin!r}")
    return outcome


def read_jsonl(path: Path | str, *, warn: Warn = _stderr) -> list[Outcome]:
    """Every outcome in a JSONL file, validated.

    A last line that is cut short (no newline at the end and not valid JSON) is skipped
    with a warning naming ``file:line``; every other bad line raises :class:`UsageError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no results file at {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, expected a JSONL results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read results file {path}: {exc}") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    outcomes = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{index + 1}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            if index == last and not text.endswith("\n"):
                warn(f"{where}: skipped a truncated last record (the writer stopped mid-line)")
                continue
            raise UsageError(f"{where} is not a valid outcome record (not JSON: {exc}); expected one JSON "
                             "object per line as `conform export --jsonl` writes") from None
        outcomes.append(outcome_from_record(data, where))
    return outcomes


def write_jsonl(path: Path | str, outcomes: Iterable[Outcome]) -> int:
    """Write ``outcomes`` to ``path`` atomically (a temporary file in the same directory,
    renamed into place, removed if anything fails); returns how many lines were written."""
    path = Path(path)
    count = 0
    with atomic_writer(path) as fh:
        for outcome in outcomes:
            fh.write(json.dumps(outcome.to_json(), default=repr, sort_keys=True) + "\n")
            count += 1
    return count


class atomic_writer:  # noqa: N801 (used as a context manager, like open())
    """``with atomic_writer(path) as fh:`` writes ``path`` whole or not at all; a failure
    (including an interrupt) leaves no ``*.tmp`` behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.tmp = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)  # mkstemp makes the file private; a report is not
        self.fh = os.fdopen(fd, "w", encoding="utf-8")
        return self.fh

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.fh.close()
            if exc_type is None:
                self.tmp.replace(self.path)
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            self.tmp.unlink(missing_ok=True)


def read_summary(path: Path) -> dict[str, Any]:
    """A ``summary.json`` document; anything but a JSON object with the expected shapes of
    the fields read back (``known``: entry id -> object) is a :class:`UsageError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); expected the summary object `conform run` writes") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} holds {_kind(data)}, expected the summary object `conform run` writes")
    known = data.get("known", {})
    if not isinstance(known, dict) or not all(isinstance(v, dict) for v in known.values()):
        raise UsageError(f"{path}: field 'known' must map entry ids to objects")
    for name, types in (("seed", (int, type(None))), ("duration_s", (int, float, type(None))),
                        ("environment", (dict,)), ("transforms", (list,)), ("sources", (list,))):
        if name in data and not _check_type(data[name], types):
            raise UsageError(f"{path}: field {name!r} is {_kind(data[name])}, expected {_expected(types)}")
    return data
