"""Structural fingerprints, one module per transform family: ``fingerprint(applied) -> JSON-able``."""
