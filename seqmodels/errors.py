"""Errors a user's configuration can cause."""


class ConfigError(ValueError):
    """A bad configuration value. `field` names the offending key, relative to its config."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
