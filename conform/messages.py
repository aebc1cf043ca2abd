"""The engine's own prose, in one table: every message the engine and its oracles write into
an outcome for people to read.

Nothing matches on this text. A known divergence matches an outcome's structured fields
(stage, symptom, side, exception type, the raised exception's own message, place, node,
diff entries), so rewording any message here changes what a person reads and nothing else;
``tests/unit/test_messages.py`` rewords every template and replays every witness to hold
the registry to that.

Templates are :meth:`str.format` strings; :func:`say` fills one in by key.

Example::

    >>> say("apply.crash", impl="upstream", exception="KeyError", error="'x'")
    "upstream raises KeyError: 'x'"
"""

from __future__ import annotations

import string
from typing import Any

MESSAGES: dict[str, str] = {
    # preparing the case (conform.engine.prepare)
    "case.build-timeout": "building the case ran past its time limit: {exception}: {error}",
    "case.build-raised": "{exception}: {error}",
    "case.eager-timeout": "the eager module ran past its time limit: {exception}: {error}",
    "case.eager-raised": "the eager module raised: {exception}: {error}",
    "case.trace-timeout": "symbolic_trace ran past its time limit: {exception}: {error}",
    "case.trace-rejects": "symbolic_trace rejects the module: {exception}: {error}",
    "case.traced-timeout": "the traced module ran past its time limit: {exception}: {error}",
    "case.traced-raised": "the traced module raised: {exception}: {error}",
    "case.trace-changes": "tracing changes what the module computes, so no transform can be judged: {diff}",
    # applying the transform (conform.engine.apply / _judge)
    "fingerprint.timeout": "fingerprinting ran past its time limit",
    "apply.timeout": "{impl} ran past its time limit",
    "apply.timeout-others": "{impl} ran past its time limit ({others})",
    "apply.other-raises": "{impl} raises {exception}",
    "apply.other-times-out": "{impl} times out too",
    "apply.other-finishes": "{impl} finishes",
    "apply.crash": "{impl} raises {exception}: {error}",
    "apply.crash-other-succeeds": "{impl} raises {exception}: {error} (the {other} implementation succeeds)",
    "apply.lint": "{impl} produces a graph that fails lint: {error}",
    "apply.fingerprint-crash": "fingerprinting {impl}'s result raised {exception}: {error}",
    "pass.both-raise": "both implementations raise {exception}",
    # comparing (conform.engine._judge)
    "compare.exception-types": "both raise, with different exception types: reference {reference}, "
                               "upstream {upstream}",
    "execute.timeout": "the module {impl} produced ran past its time limit",
    "execute.crash": "the module {impl} produced raises {exception}: {error}",
    "compare.fingerprint": "the structural fingerprints differ",
    "compare.outputs": "reference and upstream transformed modules compute different outputs",
    "compare.eager": "the module {impl} produced computes different {what} than the eager module",
    # the device oracle (conform.engine._judge_device)
    "device.apply-crash": "the transform succeeds on CPU but fails on CUDA: {exception}: {error}",
    "device.apply-timeout": "the transform succeeds on CPU but fails on CUDA (timeout)",
    "device.execute": "the transformed module runs on CPU but raises on CUDA, where the eager module "
                      "runs: {exception}: {error}",
    "device.outputs": "on CUDA the transformed module computes different outputs than the eager module",
    # the metamorphic oracles (conform.oracles.metamorphic)
    "oracle.retracing": "tracing the transformed module",
    "oracle.regenerating": "regenerating the code",
    "oracle.regenerating-from-graph": "regenerating the code from the graph",
    "oracle.module": "the {label} module",
    "oracle.timeout": "{oracle}: {what} ran past its time limit ({impl})",
    "oracle.crash": "{oracle}: {what} raises {exception}: {error} ({impl})",
    "oracle.execute-crash": "{oracle}: {what} raises {exception}: {error}, where {impl}'s transformed module runs",
    "oracle.outputs": "{oracle}: the {label} module computes different outputs than {impl}'s transformed module",
    "oracle.again-timeout": "{oracle}: applying {transform} to {impl}'s output ran past its time limit",
    "oracle.again-crash": "{oracle}: applying {transform} to {impl}'s output raises {exception}: {error}",
    "oracle.idempotent-graph": "idempotent: applying the transform to {impl}'s output changes the graph",
    "oracle.roundtrip": "roundtrip: {impl}'s module runs code that its graph no longer gives (the graph "
                        "changed after the last recompile)",
}


def say(key: str, **fields: Any) -> str:
    """The message ``key`` of :data:`MESSAGES` with ``fields`` filled in.

    Raises:
        KeyError: ``key`` is not in the table (a harness bug).
    """
    return MESSAGES[key].format(**fields)


def placeholders(template: str) -> list[str]:
    """The field names a template fills in, in order (``"{impl} raises"`` -> ``["impl"]``)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]
