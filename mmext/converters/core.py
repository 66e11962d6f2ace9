"""Family-independent parts of checkpoint conversion: reading an official
file, writing the result atomically, and the end-to-end pipeline."""
import argparse
import os.path as osp
from typing import Callable, Dict, Optional

import torch

from mmext.utils.checkpoint import load_checkpoint_file
from mmext.utils.fileio import atomic_write, check_output_path
from .base import ConversionError, unwrap
from .registry import get_converter


def load_source(path: str) -> Dict[str, torch.Tensor]:
    """Read an official checkpoint into a flat state dict: a bare state dict
    or one under ``state_dict`` / ``model`` / ``state_dict_ema``, with or
    without ``module.`` prefixes. Loading is ``weights_only`` (plus
    ``argparse.Namespace``, which timm training scripts store as ``args``);
    truncated files raise :class:`~mmext.utils.checkpoint.
    CorruptCheckpointError`."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = load_checkpoint_file(path, map_location='cpu')
    return unwrap(checkpoint, path)


def save_atomic(obj, dst: str, force: bool = False) -> None:
    """``torch.save`` through :func:`~mmext.utils.fileio.atomic_write`: a
    crash or error never leaves a partial ``dst``, the file honours the
    umask, and an existing ``dst`` is replaced only with ``force``."""
    with atomic_write(dst, force=force) as f:
        torch.save(obj, f)


def check_destination(src: str, dst: str, force: bool = False) -> None:
    """Refuse ``dst``, before the (slow) load, where it exists (unless
    ``force``), cannot be written, or is ``src`` itself."""
    if osp.exists(dst) and not force:
        raise FileExistsError(f'{dst} exists; pass --force to overwrite it')
    check_output_path(dst, 'DST')
    if osp.abspath(src) == osp.abspath(dst):
        raise ConversionError('SRC and DST are the same file; write the '
                              'conversion to another file')


def convert_checkpoint(family: str,
                       src: str,
                       dst: str,
                       keep_head: bool = False,
                       force: bool = False,
                       arch=None,
                       log: Optional[Callable[[str], None]] = None,
                       **options) -> Dict:
    """Convert ``src`` (an official checkpoint of ``family``) to ``dst``.

    Infers the architecture from the tensor shapes (``arch`` overrides),
    maps the keys, drops classifier-only keys unless ``keep_head``, checks
    that the result loads into the inferred architecture with no missing or
    unexpected keys, and only then writes ``{'state_dict', 'meta'}``
    atomically. Returns ``meta`` plus the list of dropped keys.
    """
    log = log or (lambda msg: None)
    converter = get_converter(family, source=src, **options)
    check_destination(src, dst, force)

    state = load_source(src)
    new_state, meta, dropped = converter.convert(
        state, keep_head=keep_head, arch=arch)
    converter.verify(new_state, meta)
    meta = dict(meta, source=osp.basename(src))
    save_atomic({'state_dict': new_state, 'meta': meta}, dst, force=force)

    log(f'{family}: {meta.get("arch") or "custom arch"} '
        f'({meta.get("layout")}), {len(new_state)} tensors written to {dst}')
    if dropped:
        log(f'dropped {len(dropped)} key(s) not used by this layout: ' +
            ', '.join(_summarize(dropped)))
    return dict(meta, dropped_keys=list(dropped))


def _summarize(keys, limit: int = 12):
    """Group ``a.b.weight``/``a.b.bias`` under ``a.b.*`` for short logs."""
    groups = []
    for key in keys:
        stem = key.rsplit('.', 1)[0] + '.*' if '.' in key else key
        if stem not in groups:
            groups.append(stem)
    return groups[:limit] + ([f'... ({len(groups) - limit} more)']
                             if len(groups) > limit else [])
