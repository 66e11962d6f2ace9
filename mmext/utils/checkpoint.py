"""Checkpoint loading under torch's ``weights_only`` default (torch >= 2.6).

mmengine checkpoints carry a few non-tensor objects (the message hub's
``HistoryBuffer``, numpy arrays and scalars). Rather than switching safety off,
the exact classes are allow-listed; anything else in a pickle is refused with
an error that names the offending global and the file.
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from mmext.errors import (CheckpointMismatchError,  # noqa: F401
                          CorruptCheckpointError, NonFiniteCheckpointError,
                          NotResumableError, UntrustedCheckpointError)

_registered = False


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
    """The classes and functions mmengine checkpoints need, nothing more."""
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


def load_checkpoint_file(filename: str, map_location=None,
                         mmap: bool = False):
    """``torch.load`` with the allow-list and errors that say what to do.

    Every way a file can fail to be a checkpoint (missing, a folder,
    unreadable, empty, truncated, text, another pickle, code inside) ends in
    one exception whose message names the file, what is wrong and what to do.
    ``mmap=True`` maps the tensors instead of reading them: a cheap way to
    look at the structure of a large file.
    """
    register_safe_globals()
    filename = str(filename)
    if osp.isdir(filename):
        raise CorruptCheckpointError(
            f'{filename} is a folder, not a checkpoint file; give the .pth '
            'file inside it.')
    if osp.isfile(filename) and osp.getsize(filename) == 0:
        raise CorruptCheckpointError(
            f'{filename} is empty (0 bytes), e.g. left by a run killed while '
            'saving; delete it, and download, convert or save it again.')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise FileNotFoundError(f'checkpoint not found: {filename}') from None
    except PermissionError:
        raise PermissionError(
            f'{filename} cannot be read (permission denied); fix its '
            'permissions (chmod u+r) or copy it somewhere readable.') from None
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL ([\w.]+)', str(err))
        if found is None:
            raise _corrupt(filename, err) from None
        raise UntrustedCheckpointError(
            f'refusing to load {filename}: it references {found.group(1)}, '
            'which is not on mmext\'s allow-list of checkpoint classes '
            '(tensors, numpy arrays/scalars, mmengine HistoryBuffer). A '
            'pickle can run arbitrary code; if you trust this file and the '
            'class is plain data, allow it with torch.serialization.'
            'add_safe_globals([...]) before loading.') from None
    except Exception as err:  # noqa: BLE001 - any other way of not being one
        raise _corrupt(filename, err) from None


def _corrupt(filename: str, err: Exception) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f'{filename} {_what_it_is(filename, err)}. Download, convert or save '
        'it again.')


def _what_it_is(filename: str, err: Exception) -> str:
    """What a file that torch cannot load looks like, from its first bytes
    (the loader's own errors, e.g. ``IndexError`` for a text file, do not
    tell)."""
    try:
        with open(filename, 'rb') as f:
            head = f.read(256)
    except OSError:
        head = b''
    if head.startswith(b'PK'):
        return ('is truncated or damaged (an incomplete zip archive, e.g. a '
                'download or save that was cut short)')
    if head.startswith(b'\x93NUMPY'):
        return 'is a NumPy .npy file, not a torch checkpoint'
    if head.startswith(b'\x80'):
        return ('is a plain pickle, not a torch checkpoint (or one in the '
                'pre-1.6 format cut short)')
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(
            c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:40]
        return f'is a text file (it starts with {first!r}), not a checkpoint'
    detail = (str(err).strip().splitlines() or [''])[0][:100]
    return f'is not a torch checkpoint ({type(err).__name__}: {detail})'


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


# --------------------------------------------------------------------------
# does a state dict fit a model?
# --------------------------------------------------------------------------


def _unwrap_model(model):
    # DDP wrappers and TTA models hold the real model in ``.module``
    while hasattr(model, 'module') and isinstance(
            getattr(model, 'module'), torch.nn.Module):
        model = model.module
    return model


def compare_state_dicts(
        expected: Dict[str, torch.Tensor], given: Dict[str, torch.Tensor]
) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """``(missing, unexpected, mismatched)`` keys of ``given`` against
    ``expected``; mismatched entries are ``(key, expected shape, given
    shape)``. BN ``num_batches_tracked`` counters are ignored, as mmengine's
    loader ignores them."""
    def counted(key):
        return not key.endswith('num_batches_tracked')

    missing = [k for k in expected if k not in given and counted(k)]
    unexpected = [k for k in given if k not in expected and counted(k)]
    mismatched = []
    for key, value in given.items():
        want = expected.get(key)
        if want is None or not hasattr(value, 'shape'):
            continue
        if tuple(want.shape) != tuple(value.shape):
            mismatched.append((key, tuple(want.shape), tuple(value.shape)))
    return missing, unexpected, mismatched


def mismatch_summary(missing, unexpected, mismatched,
                     examples: int = 2) -> str:
    """One line: the counts and a few examples of each kind."""
    def some(items, show):
        shown = ', '.join(show(i) for i in items[:examples])
        more = f', ... ({len(items) - examples} more)' \
            if len(items) > examples else ''
        return shown + more

    parts = []
    if missing:
        parts.append(f'{len(missing)} missing (' + some(missing, str) + ')')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected (' +
                     some(unexpected, str) + ')')
    if mismatched:
        parts.append(
            f'{len(mismatched)} of another shape (' + some(
                mismatched, lambda m: f'{m[0]}: model {list(m[1])}, '
                f'file {list(m[2])}') + ')')
    return '; '.join(parts)


def check_state_dict_fits(module: torch.nn.Module, state: Dict,
                          source: str, fix: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` has exactly
    the keys and shapes of ``module``'s state dict. ``fix`` ends the message
    (what the user can do)."""
    expected = _unwrap_model(module).state_dict()
    missing, unexpected, mismatched = compare_state_dicts(expected, state)
    if missing or unexpected or mismatched:
        part = _part_it_fits(expected, state)
        if part:
            fix = (f'Its keys are those of the model\'s {part!r} alone (a '
                   f'converted {part} checkpoint?): give it to model.{part}.'
                   "init_cfg=dict(type='Pretrained', checkpoint=...) "
                   f'instead. {fix}')
        raise CheckpointMismatchError(
            f'{source} does not fit the model ({len(expected)} keys): ' +
            mismatch_summary(missing, unexpected, mismatched) + f'. {fix}')


def _part_it_fits(expected: Dict, state: Dict) -> Optional[str]:
    """The sub-module (e.g. ``backbone``) whose keys ``state`` has exactly,
    without its prefix."""
    for part in dict.fromkeys(k.split('.', 1)[0] for k in expected):
        if state and all(f'{part}.{k}' in expected for k in state):
            return part
    return None


def load_pretrained_strict(module: torch.nn.Module,
                           path: str,
                           prefix: Optional[str] = None,
                           map_location='cpu',
                           unused: Tuple[str, ...] = (),
                           optional: Tuple[str, ...] = ()) -> Dict:
    """Load pretrained weights into ``module`` only if they fit exactly.

    The file is read with :func:`load_checkpoint_file`; its state dict is
    unwrapped (``state_dict`` / ``model`` / ``state_dict_ema``, ``module.``
    prefixes), and with ``prefix`` (as in mmengine's ``Pretrained`` init,
    e.g. ``'backbone.'``) only the keys under it are taken, without it.
    Anything missing, unexpected or of another shape raises
    :class:`CheckpointMismatchError` naming the file, e.g. S weights given
    to a B backbone. ``unused``: key prefixes of the file that the module
    leaves out on purpose (e.g. ``('stages.3.', 'norm3.')`` when
    ``out_indices`` stops early); they are dropped, not reported.
    ``optional``: key prefixes of the module the file may lack (e.g. output
    norms, which an ImageNet classifier has not); they keep their
    initialisation. Returns the loaded state dict.
    """
    checkpoint = load_checkpoint_file(path, map_location=map_location)
    try:
        state = state_dict_from(checkpoint)
    except ValueError as err:
        raise CorruptCheckpointError(f'{path}: {err}') from None
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(
                f'{path} has no keys under {prefix!r}; drop the prefix from '
                'init_cfg or give a checkpoint of the whole model.')
    if unused:
        state = {k: v for k, v in state.items() if not k.startswith(unused)}
    if optional:
        own = _unwrap_model(module).state_dict()
        state = dict(state)
        for key in own:
            if key.startswith(optional) and key not in state:
                state[key] = own[key]
    check_state_dict_fits(
        module, state, f'pretrained weights {path}',
        'Are they made for this architecture (arch, out_indices)? Convert '
        'the matching official checkpoint with tools/convert_imagenet.py.')
    _unwrap_model(module).load_state_dict(state, strict=False)
    return state


# --------------------------------------------------------------------------
# non-finite values
# --------------------------------------------------------------------------
def _named_float_tensors(tree, prefix: str = ''):
    """``(name, tensor)`` of every floating-point tensor in a nested
    structure of dicts, lists and tuples (a state dict, an optimizer's
    state)."""
    if torch.is_tensor(tree):
        if tree.is_floating_point() and tree.numel():
            yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _named_float_tensors(
                value, f'{prefix}.{key}' if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _named_float_tensors(
                value, f'{prefix}.{i}' if prefix else str(i))


def nonfinite_tensors(tree) -> List[str]:
    """Names of the floating-point tensors in ``tree`` (a state dict, an
    optimizer state, any nesting of dicts and lists) that hold a NaN or an
    inf, in order. One fused norm per tensor finds the candidates (a NaN or
    an inf makes the norm non-finite); only those are checked element-wise,
    since a norm of large finite values (fp16) can overflow too."""
    named = list(_named_float_tensors(tree))
    if not named:
        return []
    tensors = [t.detach() for _, t in named]
    try:
        norms = torch._foreach_norm(tensors)
    except (RuntimeError, TypeError):  # a tensor type foreach cannot take
        norms = None
    suspects = range(len(tensors)) if norms is None else []
    by_device: Dict = {}
    for i, norm in enumerate(norms or ()):
        by_device.setdefault(norm.device, []).append(i)
    for indices in by_device.values():  # one synchronisation per device
        finite = torch.isfinite(
            torch.stack([norms[i].float() for i in indices])).tolist()
        suspects += [i for i, ok in zip(indices, finite) if not ok]
    return [named[i][0] for i in sorted(suspects)
            if not bool(torch.isfinite(tensors[i]).all())]


def nonfinite_report(tree, examples: int = 3) -> Optional[str]:
    """``'2 of 245 tensors hold NaN or inf: a, b'`` for the non-finite
    tensors of ``tree`` (see :func:`nonfinite_tensors`); None if all are
    finite."""
    names = nonfinite_tensors(tree)
    if not names:
        return None
    total = sum(1 for _ in _named_float_tensors(tree))
    shown = ', '.join(names[:examples])
    more = f', ... ({len(names) - examples} more)' \
        if len(names) > examples else ''
    return f'{len(names)} of {total} tensors hold NaN or inf: {shown}{more}'


def check_finite_weights(state: Dict, source: str,
                         fix: str = 'It is the state of a diverged run: '
                         'use an earlier checkpoint of that run.') -> None:
    """Raise :class:`NonFiniteCheckpointError` (one line naming ``source``,
    the count and the first tensors) if the state dict ``state`` holds NaN
    or inf. The check every reader of weights makes: ``tools/test.py``,
    resuming, the inferencers."""
    report = nonfinite_report(state)
    if report:
        raise NonFiniteCheckpointError(
            f'{source} has non-finite weights: {report}. {fix}')


# --------------------------------------------------------------------------
# resuming
# --------------------------------------------------------------------------


_STEP_FILE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def is_complete_checkpoint(path: str) -> bool:
    """Cheap completeness test: a torch checkpoint is a zip archive whose
    index sits at its very end, so a truncated file fails to open."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def check_resumable(path: str) -> None:
    """Raise :class:`NotResumableError` unless ``path`` is a complete
    training checkpoint (with ``meta.epoch``/``meta.iter`` and the message
    hub), naming what it is instead."""
    checkpoint = load_checkpoint_file(path, map_location='cpu',
                                      mmap=is_complete_checkpoint(path))
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'epoch' not in meta \
            or 'iter' not in meta or 'message_hub' not in checkpoint:
        raise NotResumableError(
            f'{path} is not a training checkpoint (no epoch/iter/optimizer '
            'state: a converted or published model?). Resume from an '
            'epoch_N.pth / iter_N.pth of a training run, or start training '
            'from these weights with --cfg-options load_from=' + path)


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The file that ``work_dir/last_checkpoint`` names (None if the
    pointer is missing or empty); whether it is complete is not checked."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


def find_resume_checkpoint(work_dir: str, log=None) -> Optional[str]:
    """The checkpoint that ``--resume`` (without a path) continues from.

    ``work_dir/last_checkpoint`` names it; if that file is missing, empty or
    names an incomplete file, the newest complete ``epoch_N.pth`` /
    ``iter_N.pth`` in ``work_dir`` is taken (and ``log`` says so). Returns
    None if ``work_dir`` holds no checkpoint at all (a fresh start);
    raises :class:`NotResumableError` if it holds checkpoints but none is
    usable.
    """
    log = log or (lambda msg: None)
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = read_last_checkpoint(work_dir)
    if named and osp.isfile(named) and is_complete_checkpoint(named):
        return named
    candidates = []
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            found = _STEP_FILE.match(name)
            if found:
                candidates.append((int(found.group(2)), name))
    complete = [osp.join(work_dir, name) for _, name in sorted(candidates)
                if is_complete_checkpoint(osp.join(work_dir, name))]
    if named:
        state = 'incomplete' if osp.exists(named) else 'missing'
        why = f'{pointer} names {named}, which is {state}'
    else:
        why = f'{pointer} is ' + ('empty' if osp.isfile(pointer) else
                                  'missing')
    if complete:
        log(f'--resume: {why}; resuming from the newest complete checkpoint '
            f'{complete[-1]}')
        return complete[-1]
    if named is None and not candidates:
        return None
    broken = [name for _, name in sorted(candidates)]
    raise NotResumableError(
        f'--resume: nothing usable in {work_dir}: {why}'
        + (f', and {", ".join(broken)} {"is" if len(broken) == 1 else "are"} '
           'incomplete' if broken else '')
        + '. Resume from another checkpoint with --resume PATH, or start '
        'over without --resume (after removing the broken files).')


def resume_checkpoint(load_from: Optional[str], work_dir: str,
                      log=None) -> Optional[str]:
    """What ``resume=True`` continues from: ``load_from`` when given, else
    the newest complete checkpoint of ``work_dir``
    (:func:`find_resume_checkpoint`), refused unless it is a training
    checkpoint (:func:`check_resumable`). None, said through ``log``, when
    the work dir holds no checkpoint: training starts from scratch."""
    log = log or (lambda msg: None)
    if not load_from:
        load_from = find_resume_checkpoint(work_dir, log=log)
        if load_from is None:
            log(f'--resume: no checkpoint in {work_dir}; training starts '
                'from scratch.')
            return None
    check_resumable(load_from)
    return load_from
