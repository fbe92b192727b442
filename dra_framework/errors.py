"""Exceptions with messages meant for operators: each names the object and field at fault."""


class DraFrameworkError(Exception):
    """Base class of the errors dra-framework raises with a message meant for operators."""


class PluginError(DraFrameworkError):
    """A plugin could not be loaded or failed validation (misspelled hook, bad registration)."""


class ConfigError(DraFrameworkError, ValueError):
    """A configuration is invalid: the composed-driver config (the message names the field,
    ``drivers[0].name``) or a claim's opaque device config (``claim <ns>/<name>: config[1]
    (<apiVersion> <kind>): <field>: <problem>``; the engine answers the claim with it)."""


class HookError(PluginError):
    """A backend hook was misused (not marked ``@hookimpl``, a required hook missing, an unknown
    hook name) or returned a result of the wrong type. The message names the backend and hook."""
