"""Checkpoint loading under torch's ``weights_only`` default (torch >= 2.6).

mmengine checkpoints carry a few non-tensor objects (the message hub's
``HistoryBuffer``, numpy arrays and scalars). Rather than switching safety off,
the exact classes are allow-listed; anything else in a pickle is refused with
an error that names the offending global and the file.
"""
import pickle
import re
from typing import List, Optional

import numpy as np
import torch

_registered = False


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint references a Python global outside the allow-list."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or not a torch checkpoint."""


def _numpy_reconstruct():
    # numpy 2 moved the pickling helpers from numpy.core to numpy._core.
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    return [_reconstruct, scalar]


def _history_buffer_getattr(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A pickled ``HistoryBuffer`` refers to its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``. A general getattr would let a pickle
    walk to any attribute (``__globals__``, ...), so only those lookups pass.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if owner is HistoryBuffer and not name.startswith('_') and (
            name in HistoryBuffer._statistics_methods
            or name in ('min', 'max', 'current', 'mean')):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'GLOBAL getattr({getattr(owner, "__name__", owner)!r}, {name!r}) '
        'is outside the allow-list')


def safe_globals() -> List:
    """The classes and functions mmengine checkpoints need, and nothing more."""
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [HistoryBuffer, np.ndarray, np.dtype] + _numpy_reconstruct()
    allowed.append((_history_buffer_getattr, 'builtins.getattr'))
    # Concrete dtype classes (numpy >= 1.25) appear when a dtype is pickled.
    allowed += sorted({type(np.dtype(t)) for t in np.sctypeDict.values()},
                      key=lambda c: c.__name__)
    return allowed


def register_safe_globals() -> None:
    """Allow-list mmengine's checkpoint classes and install a local loader
    with clear errors. Idempotent; called on ``import mmext``."""
    global _registered
    if _registered:
        return
    torch.serialization.add_safe_globals(safe_globals())
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(
        _load_from_local)
    _registered = True


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` with the allow-list and errors that say what to do."""
    register_safe_globals()
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint not found: {filename}') from None
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL ([\w.]+)', str(err))
        name = found.group(1) if found else 'an unknown global'
        raise UntrustedCheckpointError(
            f'refusing to load {filename}: it references {name}, which is not '
            'on mmext\'s allow-list of checkpoint classes (tensors, numpy '
            'arrays/scalars, mmengine HistoryBuffer). A pickle can run '
            'arbitrary code; if you trust this file and the class is plain '
            'data, allow it with torch.serialization.add_safe_globals([...]) '
            'before loading.') from None
    except (RuntimeError, EOFError, ValueError) as err:
        if _looks_corrupt(err):
            raise CorruptCheckpointError(
                f'{filename} is truncated or is not a torch checkpoint '
                f'({type(err).__name__}: {str(err).splitlines()[0]}). '
                'Download or convert it again.') from None
        raise


def _looks_corrupt(err: Exception) -> bool:
    text = str(err)
    markers = ('PytorchStreamReader', 'zip archive', 'Ran out of input',
               'invalid load key', 'unpickling stack underflow',
               'file not found')
    return isinstance(err, EOFError) or any(m in text for m in markers)


def _load_from_local(filename: str, map_location=None, logger=None):
    # Signature of mmengine's CheckpointLoader scheme functions.
    return load_checkpoint_file(filename, map_location)


def state_dict_from(checkpoint, keys: Optional[List[str]] = None):
    """Unwrap a checkpoint into its state dict (``state_dict``, ``model`` or
    ``state_dict_ema`` wrappers; ``module.`` prefixes removed)."""
    keys = keys or ['state_dict', 'model', 'state_dict_ema']
    state = checkpoint
    if isinstance(checkpoint, dict):
        for key in keys:
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    if not isinstance(state, dict):
        raise ValueError('checkpoint holds no state dict (expected a dict of '
                         f'tensors or one under {keys})')
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state.items()}
