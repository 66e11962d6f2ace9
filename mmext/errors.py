"""The error types of mmext, in one place that every layer may import.

Each one means a user's mistake (a bad file, key, option or launch) and
carries the fix in its message; the command-line tools print such an error
as one line (see :data:`USER_ERRORS`).
"""
import pickle
import re
from typing import Optional


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


class NonFiniteCheckpointError(ValueError):
    """A checkpoint (or a model about to be saved) holds NaN or inf: the
    state of a diverged run, whose results would be meaningless."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf losses or gradients more often than
    allowed."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, I/O error)."""


class WorkDirLockedError(RuntimeError):
    """Another live training run holds the work dir."""


class DataCheckError(ValueError):
    """A data set has problems that would stop or spoil a run."""


_WORKER_TEXT = re.compile(r'^Caught (\w+) in DataLoader worker process \d+')


def worker_error_summary(text: str) -> Optional[str]:
    """The original error (``Type: message``, the last line of its
    traceback) of an exception that a DataLoader worker re-raised as
    ``type(exc)(traceback text)``; None if ``text`` is not such a text."""
    if not (_WORKER_TEXT.match(text) and 'Original Traceback' in text):
        return None
    return text.rstrip().splitlines()[-1].strip()


class DataLoadError(RuntimeError):
    """A sample could not be loaded; the message names it and the cause.
    :attr:`detail` holds the original traceback (text) when the error came
    from a DataLoader worker."""

    def __init__(self, message: str, detail: str = ''):
        last = worker_error_summary(message)
        if last is not None:
            detail = message
            message = last.split(f'{type(self).__name__}: ', 1)[-1]
        super().__init__(message)
        self.detail = detail


class Terminated(BaseException):
    """The run was stopped by SIGTERM. A ``BaseException``, as
    ``KeyboardInterrupt``: no ``except Exception`` may swallow it."""


#: errors that mean a user's mistake: the tools print their message alone
#: (OSError: a missing, unreadable or unwritable file)
USER_ERRORS = (ConfigError, OSError, LaunchError, CorruptCheckpointError,
               UntrustedCheckpointError, CheckpointMismatchError,
               NotResumableError, ConversionError, ImageError,
               NonFiniteCheckpointError, NonFiniteLossError,
               WorkDirLockedError, DataCheckError, DataLoadError)
