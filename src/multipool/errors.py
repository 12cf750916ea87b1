"""The one exception tree of multipool.

Every error raised on purpose derives from :class:`PoolError`; where a builtin
exception fits too, the class inherits it as well so callers may catch either.
"""


class PoolError(Exception):
    """Root of every error multipool raises on purpose."""


class ConfigError(PoolError, ValueError):
    """A configuration file or value is invalid.

    The message names the file, the key and the reason.
    """

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None):
        self.reason = reason
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class AddressError(PoolError, ValueError):
    """An address is malformed or belongs to another coin or network."""


class SerializationError(PoolError, ValueError):
    """Bytes or hex that cannot be decoded into the expected structure."""


class TemplateError(PoolError, ValueError):
    """A block template from the daemon is missing a field or holds a bad value."""
