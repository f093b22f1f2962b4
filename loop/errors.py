"""Errors a user can fix. The CLI prints their message and exits with code 2."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """The config file is missing, malformed or invalid."""


class RunStoreError(UserError):
    """A run folder is missing, locked or incompatible with the request."""
