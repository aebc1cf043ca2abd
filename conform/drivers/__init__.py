"""Custom drivers for registry rows whose calling convention is not a generic one."""
