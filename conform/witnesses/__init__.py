"""Witness cases for known divergences, one module per transform family."""
