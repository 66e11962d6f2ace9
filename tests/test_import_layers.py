"""Imports only point down the floors of the package (ARCHITECTURE.md):

    apis, deploy -> converters -> engine -> models, datasets -> ops
    -> utils, errors, registry, version (and ``mmext/__init__.py``)

A module may import its own floor and the floors below it, never one above.
Every import of every module counts, also those inside functions (a late
import is still a dependency). And no module reaches into the ``__init__``
of a package it lives in for a name (``from . import get_converter`` in
``converters/core.py`` was one): the package's ``__init__`` imports its
modules, so that way runs in a circle. Imports by string
(``importlib.import_module``, the registries' lazy ``locations``) are not
followed."""
import ast
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = 'mmext'

#: floor of each part of the package (the first name after ``mmext.``)
FLOORS = {
    'apis': 5, 'deploy': 5,
    'converters': 4,
    'engine': 3,
    'models': 2, 'datasets': 2,
    'ops': 1,
    'utils': 0, 'errors': 0, 'registry': 0, 'version': 0, '': 0,
}  # yapf: disable


def module_name(root: str, path: str) -> str:
    """``mmext/a/b.py`` -> ``mmext.a.b``; a package ``__init__.py`` is the
    package."""
    parts = osp.splitext(osp.relpath(path, root))[0].split(os.sep)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def floor_of(module: str) -> Optional[int]:
    """The floor of ``mmext.<part>...`` (None: a part with no floor)."""
    parts = module.split('.')
    return FLOORS.get(parts[1] if len(parts) > 1 else '')


def imports(module: str, is_package: bool,
            source: str) -> Iterator[Tuple[int, str, Tuple[str, ...]]]:
    """``(line, imported module, names taken from it)`` of every import
    statement of ``module`` inside the package, relative ones resolved."""
    package = module if is_package else module.rpartition('.')[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == PACKAGE:
                    yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module]
                                          if node.module else []))
            else:
                target = node.module or ''
            if target.split('.')[0] == PACKAGE:
                yield node.lineno, target, tuple(a.name for a in node.names)


def violations(root: str, path: str, source: str) -> List[str]:
    """What is wrong with the imports of the file ``path`` (under
    ``root``, the folder holding the package)."""
    module = module_name(root, path)
    is_package = path.endswith('__init__.py')
    own = floor_of(module)
    if own is None:
        return [f'{module}: no floor for this part of the package; add it '
                'to FLOORS in tests/test_import_layers.py']
    found = []
    rel = osp.relpath(path, root)
    for line, target, names in imports(module, is_package, source):
        floor = floor_of(target)
        if floor is None or floor > own:
            found.append(f'{rel}:{line}: {module} (floor {own}) imports '
                         f'{target} (floor {floor}): imports point down')
        # a name from the __init__ of a package this module lives in
        if module.startswith(target + '.') and target != PACKAGE:
            folder = osp.join(root, *target.split('.'))
            taken = [n for n in names
                     if not osp.exists(osp.join(folder, n + '.py'))
                     and not osp.isdir(osp.join(folder, n))]
            if taken or not names:
                found.append(f'{rel}:{line}: {module} takes '
                             f'{", ".join(taken) or target} from the '
                             f'__init__ of its own package {target}')
    return found


def package_files(root: str) -> List[str]:
    files = []
    for folder, _, names in os.walk(osp.join(root, PACKAGE)):
        files += [osp.join(folder, n) for n in names if n.endswith('.py')]
    return sorted(files)


def all_violations(root: str) -> List[str]:
    found = []
    for path in package_files(root):
        with open(path, encoding='utf-8') as f:
            found += violations(root, path, f.read())
    return found


def test_every_import_points_down():
    files = package_files(REPO)
    assert len(files) > 50  # the whole package was read
    found = all_violations(REPO)
    assert not found, '\n'.join(found)


@pytest.mark.parametrize('where, source', [
    ('utils/x.py', 'import mmext.engine\n'),
    ('utils/x.py', 'from mmext.models.backbones import DualViT\n'),
    ('models/x.py', 'def f():\n    from mmext.converters import Rule\n'),
    ('models/backbones/x.py', 'from ...engine import optim\n'),
    ('ops/x.py', 'from ..datasets import demo\n'),
    ('engine/x.py', 'from mmext.apis.launch import user_errors\n'),
    ('converters/x.py', 'from . import get_converter\n'),
    ('converters/x.py', 'import mmext.converters\n'),
])
def test_a_bad_import_is_caught(where, source):
    """The check fails where it should (a module of each floor importing
    one above it, late or relative; a module taking a name from its own
    package's ``__init__``)."""
    path = osp.join(REPO, PACKAGE, *where.split('/'))
    assert violations(REPO, path, source)


@pytest.mark.parametrize('where, source', [
    ('apis/x.py', 'from mmext.converters import get_converter\n'),
    ('converters/x.py', 'from .registry import register_converter\n'),
    ('converters/x.py', 'from . import base\n'),
    ('models/backbones/x.py', 'from ..layers import SwinBlock\n'),
    ('engine/x.py', 'from mmext.errors import ConfigError\n'),
    ('utils/x.py', 'import torch\nfrom mmext.errors import ConfigError\n'),
])
def test_a_good_import_passes(where, source):
    path = osp.join(REPO, PACKAGE, *where.split('/'))
    assert violations(REPO, path, source) == []
