"""Plugin: campaign workers run with the stride-reversed mutant of reference.shape_prop."""

from _mutants import plant

plant("stride-reversed")
