"""Exceptions that the CLI turns into one clear line and a non-zero exit."""


class NftkitError(Exception):
    """Base class for errors that carry a message meant for the user."""


class UsageError(NftkitError):
    """The user asked for something malformed (bad spec, unknown name); exit code 2."""


class UnknownPluginError(UsageError):
    """A reward or evaluator name that no installed plugin provides."""


class PluginLoadError(NftkitError):
    """A plugin was found but importing it failed."""


class InvalidPluginError(PluginLoadError):
    """A plugin imported but breaks its group's contract (the message says what to implement)."""


class MissingWeightsError(NftkitError):
    """Model weights could not be found; the message says where we looked and what to do."""


class InvalidScoreError(NftkitError):
    """A reward returned NaN, an infinite value or a tensor of the wrong shape."""


class InputError(UsageError):
    """A user-given file is malformed (prompt files, manifests, images)."""
