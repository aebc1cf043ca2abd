"""The harness's exceptions: one root, and the bad-usage error the CLI maps to exit 2."""

from __future__ import annotations

from collections.abc import Iterable


class ConformError(Exception):
    """Root of every exception the harness raises on purpose."""


class UsageError(ConformError):
    """Bad input from a person: an unknown name, an impossible option, an unreadable file.

    The message names what was wrong and, where there is a closed set of valid answers,
    lists them. The CLI prints it on one line and exits with status 2.
    """

    def __init__(self, problem: str, *, choices: Iterable[str] | None = None) -> None:
        self.problem = problem
        self.choices = sorted(choices) if choices is not None else None
        message = problem
        if self.choices is not None:
            message += f" (valid: {', '.join(self.choices) or 'none'})"
        super().__init__(message)


def unknown(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """The error for a name that is not one of ``choices``."""
    return UsageError(f"unknown {kind} {name!r}", choices=choices)
