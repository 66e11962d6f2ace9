"""Converters from official checkpoints to mmext's layouts.

A *family* (``'dualvit'``, later ``'elsa_swin'``, ...) is a module listed in
:data:`CONVERTERS` that provides

* ``infer_arch(state_dict, arch=None) -> dict``: the architecture settings
  read from tensor shapes (``arch`` overrides / completes them),
* ``convert(state_dict, keep_head=False, arch=None)
  -> (new_state_dict, meta, dropped_keys)``,
* ``verify(new_state_dict, meta)``: load the result into the architecture
  it was made for, raising on any missing/unexpected key or shape mismatch.

:func:`convert_checkpoint` runs a family on a file end to end (what
``tools/convert_imagenet.py`` calls).
"""
import importlib
from types import ModuleType
from typing import Dict, List

from .core import (ConversionError, convert_checkpoint, load_source,
                   save_atomic)

#: family name -> module implementing it (imported on first use)
CONVERTERS: Dict[str, str] = {
    'dualvit': 'mmext.converters.dualvit',
    'elsa_swin': 'mmext.converters.elsa_swin',
}

_API = ('infer_arch', 'convert', 'verify')


def available_converters() -> List[str]:
    return sorted(CONVERTERS)


def get_converter(name: str) -> ModuleType:
    """The converter module of a family, checked to provide the API."""
    if name not in CONVERTERS:
        raise KeyError(f'no converter for {name!r}; available: '
                       f'{available_converters()}')
    module = importlib.import_module(CONVERTERS[name])
    missing = [f for f in _API if not callable(getattr(module, f, None))]
    if missing:
        raise TypeError(f'converter module {module.__name__} lacks {missing}')
    return module


__all__ = [
    'CONVERTERS', 'ConversionError', 'available_converters',
    'convert_checkpoint', 'get_converter', 'load_source', 'save_atomic'
]
