"""Errors that come from outside the code: bad configs, missing data, broken checkpoints.

Entry points print their message as one sentence and exit non-zero; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(UserError):
    """An unknown name, an invalid value or an inconsistent combination in a config."""


class DataError(UserError):
    """A data set that cannot be found, read or downloaded."""


class CheckpointError(UserError):
    """A checkpoint that cannot be restored."""


class WorkdirError(UserError):
    """A workdir that cannot be used: not writable, or in use by another run."""


class DivergedError(UserError):
    """Training produced a non-finite loss, parameters or optimizer state."""


class Interrupted(UserError):
    """Training was stopped by a signal after saving a checkpoint."""
