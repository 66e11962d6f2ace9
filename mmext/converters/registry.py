"""The converter registry: ``@register_converter(NAME)`` on a family's
:class:`~mmext.converters.base.Converter` makes it
``tools/convert_imagenet.py NAME``.

Family modules are not listed anywhere: every module of this package is
imported on the first lookup, and what registered itself is there.
"""
import importlib
import os.path as osp
import pkgutil
from typing import Dict, List

#: family name -> converter class
CONVERTERS: Dict[str, type] = {}


def register_converter(name: str):
    """Class decorator: make a :class:`Converter` available by ``name``."""

    def wrap(cls):
        if name in CONVERTERS:
            raise KeyError(f'converter {name!r} is already registered')
        cls.name = name
        CONVERTERS[name] = cls
        return cls

    return wrap


def _import_families() -> None:
    package = __name__.rsplit('.', 1)[0]
    for module in pkgutil.iter_modules([osp.dirname(__file__)]):
        importlib.import_module(f'{package}.{module.name}')


def available_converters() -> List[str]:
    _import_families()
    return sorted(CONVERTERS)


def converter_class(name: str) -> type:
    """The converter class registered as ``name``."""
    if name not in CONVERTERS:
        _import_families()
    if name not in CONVERTERS:
        raise KeyError(f'no converter for {name!r}; available: '
                       f'{sorted(CONVERTERS)}')
    return CONVERTERS[name]


def get_converter(name: str, **options):
    """An instance of the converter registered as ``name``."""
    return converter_class(name)(**options)
