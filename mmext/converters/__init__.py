"""Converters from official checkpoints to mmext's layouts.

Each family is a declarative :class:`~mmext.converters.base.Converter`
registered by name (``tools/convert_imagenet.py NAME``) with
:func:`register_converter` in its own module of this package.
:func:`convert_checkpoint` runs one on a file end to end.
"""
from .base import ConversionError, Converter, Fuse, Rule, Transform
from .core import (check_destination, convert_checkpoint, load_source,
                   save_atomic)
from .registry import (CONVERTERS, available_converters, converter_class,
                       get_converter, register_converter)

__all__ = [
    'CONVERTERS', 'ConversionError', 'Converter', 'Fuse', 'Rule', 'Transform',
    'available_converters', 'check_destination', 'convert_checkpoint',
    'converter_class', 'get_converter', 'load_source', 'register_converter',
    'save_atomic'
]
