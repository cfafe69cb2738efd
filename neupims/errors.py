"""Exceptions with messages meant for users: each names the file, key path or line."""


class NeupimsError(Exception):
    """Base of every error the simulator raises on bad user input."""


class ConfigError(NeupimsError, ValueError):
    """A YAML configuration is invalid. The message names the file and the key path."""


class TraceError(NeupimsError, ValueError):
    """A trace CSV is invalid. The message names the file and the line number."""
