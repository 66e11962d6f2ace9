"""Converters from official checkpoints to mmext's layouts.

Each family is a declarative :class:`~mmext.converters.base.Converter`
registered by name (``tools/convert_imagenet.py NAME``); its module is
imported on first use. :func:`convert_checkpoint` runs one on a file end to
end.
"""
import importlib
from typing import List

from .base import (CONVERTERS, ConversionError, Converter, Fuse, Rule,
                   Transform, register_converter)
from .core import convert_checkpoint, load_source, save_atomic

#: family name -> module that registers it
FAMILIES = {
    'avit': 'mmext.converters.avit',
    'dualvit': 'mmext.converters.dualvit',
    'elsa_swin': 'mmext.converters.elsa_swin',
    'shuffle_swin': 'mmext.converters.shuffle_swin',
    'shuffle_vit': 'mmext.converters.shuffle_vit',
}


def available_converters() -> List[str]:
    return sorted(FAMILIES)


def converter_class(name: str) -> type:
    """The converter class registered as ``name``."""
    if name not in FAMILIES:
        raise KeyError(f'no converter for {name!r}; available: '
                       f'{available_converters()}')
    importlib.import_module(FAMILIES[name])
    return CONVERTERS[name]


def get_converter(name: str, **options) -> Converter:
    """An instance of the converter registered as ``name``."""
    return converter_class(name)(**options)


__all__ = [
    'CONVERTERS', 'FAMILIES', 'ConversionError', 'Converter', 'Fuse', 'Rule',
    'Transform', 'available_converters', 'convert_checkpoint',
    'converter_class',
    'get_converter', 'load_source', 'register_converter', 'save_atomic'
]
