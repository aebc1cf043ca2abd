"""Traits: predicates over a traced case, ``(graph_module, built, params) -> bool``, that
limit a known divergence to the cases having the shape its bug needs (see
:class:`conform.known.Match`). One module per transform family."""
