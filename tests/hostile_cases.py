"""Hostile case factories: cases that attack the harness rather than a transform.

Each function returns a :class:`generators.sources.Built` whose forward crashes the process,
never returns, asks for more memory than the machine has, or raises an exception whose
strings are markup. A campaign runs them with
``conform run --source factory --case tests.hostile_cases:NAME``; the supervised campaign
must record the first three kinds as a crash or a timeout and go on, and the report must
show the strings of the last kind as text.

The names are stable (end-to-end tests name them):

=========================  ====================================================================
``segfault_forward``        reads address 0 with ``ctypes.string_at(0)``: SIGSEGV
``busy_loop_forward``       ``while True: pass`` in pure Python (holds the GIL, ignores nothing)
``sleeping_forward``        ``time.sleep(3600)``
``huge_allocation_forward`` ``torch.empty`` of at least 30 GiB: refused at once (RuntimeError)
``script_exception_type``   raises an exception whose type name is ``<script>alert(1)</script>``
``script_exception_message`` raises ``RuntimeError("<script>alert(1)</script>")``
``script_source_filename``  raises from code compiled with a file name holding ``<script>``
                            and both kinds of quotes
=========================  ====================================================================

Never run the first three in a process whose survival matters: they take it down or keep
it forever.
"""

from __future__ import annotations

import ctypes
import os
import time

import torch

from generators.sources import Built

SCRIPT = "<script>alert(1)</script>"
#: The file name the hostile-source case's code is compiled under.
SCRIPT_FILENAME = "<script>alert(\"x\")</script>'quoted'.py"


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


#: At least 30 GiB and at least twice the machine's memory: with the kernel's default
#: (heuristic) overcommit, a single allocation above memory plus swap is refused at once,
#: so the forward fails in milliseconds instead of swapping. torch.empty touches no page,
#: so even where the kernel grants it nothing is written.
HUGE_BYTES = max(30 * 2**30, 2 * _physical_memory())


class _Segfault(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctypes.string_at(0)
        return x + 1


class _BusyLoop(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            pass


class _Sleeps(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(3600)
        return x + 1


class _HugeAllocation(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.empty(HUGE_BYTES // 4)
        return x + big.numel()


ScriptError = type(SCRIPT, (RuntimeError,), {"__module__": __name__})


class _RaisesScriptType(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ScriptError("an exception type named like markup")


class _RaisesScriptMessage(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{SCRIPT} \"double\" 'single' &amp;")


_HOSTILE_SOURCE = "def hostile(x):\n    raise ValueError('raised from a file named like markup')\n"
_namespace: dict[str, object] = {}
exec(compile(_HOSTILE_SOURCE, SCRIPT_FILENAME, "exec"), _namespace)
_hostile = _namespace["hostile"]


class _RaisesFromScriptFile(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _hostile(x)  # type: ignore[operator]


def _input() -> tuple[torch.Tensor]:
    return (torch.randn(2, 3),)


def segfault_forward() -> Built:
    """A forward that reads address 0 (SIGSEGV)."""
    return Built(_Segfault(), _input())


def busy_loop_forward() -> Built:
    """A forward that spins in pure Python forever."""
    return Built(_BusyLoop(), _input())


def sleeping_forward() -> Built:
    """A forward that sleeps for an hour."""
    return Built(_Sleeps(), _input())


def huge_allocation_forward() -> Built:
    """A forward asking for :data:`HUGE_BYTES` bytes, which the allocator refuses."""
    return Built(_HugeAllocation(), _input())


def script_exception_type() -> Built:
    """A forward raising an exception whose type name is ``<script>alert(1)</script>``."""
    return Built(_RaisesScriptType(), _input())


def script_exception_message() -> Built:
    """A forward raising an exception whose message holds markup and quotes."""
    return Built(_RaisesScriptMessage(), _input())


def script_source_filename() -> Built:
    """A forward raising from code whose file name holds ``<script>`` and quotes."""
    return Built(_RaisesFromScriptFile(), _input())


HOSTILE = ("segfault_forward", "busy_loop_forward", "sleeping_forward", "huge_allocation_forward",
           "script_exception_type", "script_exception_message", "script_source_filename")
#: The ones a process survives: they raise, quickly.
HARMLESS = ("huge_allocation_forward", "script_exception_type", "script_exception_message",
            "script_source_filename")
