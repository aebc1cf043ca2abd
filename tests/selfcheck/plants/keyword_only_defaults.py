"""operator_schemas: a normalized call leaves out the defaults of keyword-only parameters
(``torch.add``'s ``alpha``), as if only positional-or-keyword parameters had defaults."""

from __future__ import annotations

import inspect
from typing import Any

from plants import replace
from reference import operator_schemas
from reference.operator_schemas import ArgsKwargsPair


def _normalize_against(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any],
                       normalize_to_only_use_kwargs: bool) -> ArgsKwargsPair | None:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    plain = all(p.kind in kinds for p in sig.parameters.values())
    if not plain and tuple(sig.parameters) not in operator_schemas._POSITIONAL_ONLY_EXCEPTIONS:
        return None
    bound = operator_schemas.bind(sig, tuple(args), kwargs)
    n_positional = 0 if normalize_to_only_use_kwargs else len(args)
    new_args: list[Any] = []
    new_kwargs: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if name not in bound and p.kind is inspect.Parameter.KEYWORD_ONLY:
            continue
        value = bound[name] if name in bound else p.default
        if i < n_positional:
            new_args.append(value)
        else:
            new_kwargs[name] = value
    return ArgsKwargsPair(tuple(new_args), new_kwargs)


replace("operator_schemas", "_normalize_against", _normalize_against)
