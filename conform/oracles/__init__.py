"""Oracles beyond reference-versus-upstream agreement: independent checks of what a
transform produced (constraint checks, optimal solutions to compare heuristics against)."""
