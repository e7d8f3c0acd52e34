"""User-facing errors: each carries one line that the CLI prints before exiting with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (bad option, unknown name, unreadable data)."""

    exit_code = 2


class ConfigError(UserError):
    """A run option has a bad value."""


class UnknownPluginError(UserError):
    """A plugin name matches nothing registered."""


class DataError(UserError):
    """Data could not be read or does not fit the request."""
