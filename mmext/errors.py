"""The error types of mmext, in one place that every layer may import.

Each one means a user's mistake (a bad file, key, option or launch) and
carries the fix in its message; the command-line tools print such an error
as one line (see :data:`USER_ERRORS`).
"""
import pickle


class ConfigError(ValueError):
    """A config (or a command-line override of it) cannot work."""


class LaunchError(RuntimeError):
    """The job was started in a way that cannot work (e.g. a launcher
    without its environment variables)."""


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint references a Python global outside the allow-list."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or not a torch checkpoint."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the model it is loaded into
    (weights of another config, architecture or task)."""


class NotResumableError(ValueError):
    """Nothing to resume from, where something was expected."""


class ConversionError(ValueError):
    """A checkpoint cannot be converted (another model, already converted,
    keys no rule knows, or an architecture that does not fit)."""


class ImageError(ValueError):
    """An input image cannot be used: not an image, empty, or too small
    for the network once the test pipeline has resized it."""


#: errors that mean a user's mistake: the tools print their message alone
#: (OSError: a missing, unreadable or unwritable file)
USER_ERRORS = (ConfigError, OSError, LaunchError, CorruptCheckpointError,
               UntrustedCheckpointError, CheckpointMismatchError,
               NotResumableError, ConversionError, ImageError)
