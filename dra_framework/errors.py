"""Exceptions with messages meant for operators: each names the object and field at fault."""


class DraFrameworkError(Exception):
    """Base class."""


class PluginError(DraFrameworkError):
    """A plugin could not be loaded or failed validation (misspelled hook, bad registration)."""


class ConfigError(DraFrameworkError):
    """The composed-driver config is invalid; the message names the field (``drivers[0].name``)."""
