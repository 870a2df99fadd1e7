"""Exceptions that tools catch and print as one clear line (no traceback)."""


class DetsegError(Exception):
    """Base of detseg's own errors; the message names the file, key or value at fault."""


class ConfigError(DetsegError, ValueError):
    """A config that cannot be composed, validated or built."""


class DataError(DetsegError, ValueError):
    """A data set file or annotation that cannot be read or is invalid."""
