"""Plugin: campaign workers run with the sub-becomes-add mutant of reference.normalize."""

from _mutants import plant

plant("sub-becomes-add")
