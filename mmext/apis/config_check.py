"""Up-front checks that turn common mistakes into errors naming the problem
and the fix, before any model or dataset is built:

* ``--cfg-options`` keys that do not exist (with close matches);
* dataset folders / annotation files that are missing (with where the data
  should be and how to get it);
* a pretrained backbone file that is missing (with the conversion command);
* a checkpoint to test / resume from that is missing.
"""
import ast
import difflib
import inspect
import os
import os.path as osp
import re
from typing import Any, Iterable, List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from mmext.datasets.checks import leaf_datasets as _iter_datasets
from mmext.errors import ConfigError  # noqa: F401
from mmext.utils.fileio import check_output_path, is_remote  # noqa: F401


# --------------------------------------------------------------------------
# the config file itself
# --------------------------------------------------------------------------
def load_config(path: str) -> Config:
    """``Config.fromfile`` with one-line errors that name the file (mmengine
    names a temporary copy in syntax errors, and nothing at all in others).
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    if osp.isdir(path):
        raise ConfigError(f'config {path!r} is a folder; give a .py file in '
                          'it (e.g. one under configs/detection/)')
    if path.endswith('.py'):
        try:
            with open(path, encoding='utf-8') as f:
                source = f.read()
            ast.parse(source, filename=path)
        except SyntaxError as err:
            raise ConfigError(
                f'config {path} has a syntax error at line {err.lineno}: '
                f'{err.msg}; fix the file.') from None
        except (UnicodeDecodeError, OSError) as err:
            raise ConfigError(f'config {path} cannot be read as Python text '
                              f'({type(err).__name__}: {err}).') from None
    try:
        return Config.fromfile(path)
    except Exception as err:  # noqa: BLE001 - a base, an import, a value
        text = ' '.join(str(err).split())
        raise ConfigError(f'config {path} cannot be loaded: '
                          f'{type(err).__name__}: {text}') from None


def config_task(cfg: Config, tool: str) -> str:
    """``'mmdet'`` (detection) or ``'mmseg'`` (segmentation), from the
    config's ``default_scope``; a :class:`ConfigError` for anything else."""
    scope = cfg.get('default_scope', '')
    if scope not in ('mmdet', 'mmseg'):
        raise ConfigError(
            f'default_scope {scope!r}: {tool} handles mmdet (detection) and '
            'mmseg (segmentation) configs')
    return scope


# --------------------------------------------------------------------------
# --cfg-options
# --------------------------------------------------------------------------
#: Top-level keys the runner / tools read although bases rarely set them.
_EXTRA_TOP_LEVEL = {
    'randomness', 'experiment_name', 'find_unused_parameters', 'sync_bn',
    'model_wrapper_cfg', 'compile', 'runner_type', 'tta_model',
    'tta_pipeline', 'custom_imports', 'cfg', 'work_dir', 'launcher',
    'load_from', 'resume', 'custom_hooks', 'data_preprocessor',
    'auto_scale_lr', 'strategy'
}


def _close(word: str, options: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, [str(o) for o in options], n=3)
    return f' Did you mean {" / ".join(repr(m) for m in matches)}?' \
        if matches else ''


def _resolve_type(type_name: Any, scope: Optional[str]):
    """The class a ``type=`` refers to, searched in mmengine's registries
    within ``scope``; None when it cannot be resolved."""
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    from mmengine import registry as reg
    names = [
        'MODELS', 'DATASETS', 'TRANSFORMS', 'OPTIM_WRAPPERS', 'OPTIMIZERS',
        'PARAM_SCHEDULERS', 'HOOKS', 'METRICS', 'EVALUATOR', 'LOOPS',
        'DATA_SAMPLERS', 'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS',
        'TASK_UTILS', 'MODEL_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS',
        'WEIGHT_INITIALIZERS'
    ]
    for name in names:
        root = getattr(reg, name)
        try:
            with root.switch_scope_and_registry(scope) as registry:
                found = registry.get(type_name)
        except Exception:  # noqa: BLE001 - unknown scope, import failure
            found = None
        if found is not None:
            return found
    return None


def _params(func) -> Optional[list]:
    try:
        return list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None


#: keys of ``optim_wrapper`` that mmengine's ``build_optim_wrapper`` takes
#: out before building the wrapper type
_OPTIM_BUILDER_KEYS = ('constructor', 'paramwise_cfg')


def _kwargs_targets():
    """Classes whose ``**kwargs`` go elsewhere than to a base class: the
    extra keywords that can work there (the signature is closed then)."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import Runner
    # CheckpointHook(**kwargs) -> runner.save_checkpoint(**kwargs) at the
    # first save (a typo crashed only after a whole epoch), and the hook
    # already passes every argument save_checkpoint has
    passed = {'out_dir', 'filename', 'file_client_args', 'save_optimizer',
              'save_param_scheduler', 'meta', 'by_epoch', 'backend_args'}
    return {
        CheckpointHook: [
            p.name for p in _params(Runner.save_checkpoint)
            if p.name not in passed | {'self'}
        ]
    }


def _accepts(obj, arg: str) -> Optional[List[str]]:
    """None if ``obj(...)`` may accept keyword ``arg``; else the arguments it
    takes. ``**kwargs`` are followed up the class hierarchy (mmdet / mmseg
    components pass them to their base class) or to where they are known
    to go (:func:`_kwargs_targets`)."""
    klasses = [k for k in obj.__mro__ if k is not object] \
        if inspect.isclass(obj) else [obj]
    targets = _kwargs_targets()
    names: List[str] = []
    for klass in klasses:
        target = klass.__dict__.get('__init__') if inspect.isclass(obj) \
            else klass
        if target is None:
            continue
        params = _params(target)
        if params is None:
            return None
        if klass in targets:
            params = [p for p in params if p.kind != p.VAR_KEYWORD]
            names += [n for n in targets[klass] if n not in names]
        for p in params:
            if p.name not in ('self', 'cls', *names) and p.kind not in (
                    p.VAR_POSITIONAL, p.VAR_KEYWORD):
                names.append(p.name)
        if arg in names:
            return None
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names  # a closed signature: ``arg`` cannot be passed
        if klass.__module__.startswith('torch.'):
            return None  # e.g. nn.Module(*args, **kwargs): cannot tell
    return None


def _dataloader_keys() -> List[str]:
    """What mmengine's ``Runner.build_dataloader`` takes from a dataloader
    dict: its own keys plus the arguments of ``torch.utils.data.
    DataLoader``."""
    from torch.utils.data import DataLoader
    own = ['dataset', 'sampler', 'batch_sampler', 'collate_fn',
           'worker_init_fn', 'num_batch_per_epoch',
           'disable_subprocess_warning']
    return own + [p.name for p in _params(DataLoader.__init__)
                  if p.name != 'self' and p.name not in own]


def _plain_dict_keys(path: str) -> Optional[List[str]]:
    """The keys an untyped dict at ``path`` can hold, where the reader is
    known (None: any key may mean something)."""
    from mmengine.runner import Runner
    if re.fullmatch(r'(train|val|test)_dataloader', path):
        return _dataloader_keys()
    if path == 'randomness':
        return [p.name for p in _params(Runner.set_randomness)
                if p.name != 'self']
    if path == 'auto_scale_lr':
        return ['enable', 'base_batch_size']
    if path == 'env_cfg':
        return ['cudnn_benchmark', 'mp_cfg', 'dist_cfg']
    if path == 'env_cfg.mp_cfg':
        return ['mp_start_method', 'opencv_num_threads']
    return None


def check_cfg_options(cfg: Config, options: Optional[dict],
                      config_name: str = 'the config') -> None:
    """Raise :class:`ConfigError` for ``--cfg-options`` keys that do not exist.

    Each component of a key path must exist, or be new where a new key can
    mean something: a runner-level key at the top level, an argument that the
    component's class accepts (checked against its signature), or a key of a
    plain (untyped) dict. List indices must be in range.
    """
    if not options:
        return
    scope = cfg.get('default_scope')
    for key in options:
        parts = key.split('.')
        node: Any = cfg._cfg_dict if isinstance(cfg, Config) else cfg
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or '<top level>'
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f'--cfg-options {key}: {where} is a list of '
                        f'{len(node)} item(s); {part!r} is not an index of it '
                        f'(use 0..{len(node) - 1}).')
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(
                    f'--cfg-options {key}: {where} is a '
                    f'{type(node).__name__} ({node!r}), so it has no key '
                    f'{part!r}.')
            if part in node:
                node = node[part]
                continue
            # ``part`` is new: fine only where a new key can mean something
            new = '.'.join(parts[:depth + 1])
            if depth == 0:
                if part not in _EXTRA_TOP_LEVEL:
                    raise ConfigError(
                        f'--cfg-options {key}: {config_name} has no top-level '
                        f'key {part!r} and the runner does not read one.' +
                        _close(part, list(node) + sorted(_EXTRA_TOP_LEVEL)))
                # a new runner-level dict: its keys are known all the same
                known = _plain_dict_keys(part)
                if known is not None and len(parts) > 1 \
                        and parts[1] not in known:
                    raise ConfigError(
                        f'--cfg-options {key}: {part} takes no key '
                        f'{parts[1]!r} (it takes: {", ".join(known)}).' +
                        _close(parts[1], known))
            elif 'type' in node:
                cls = _resolve_type(node['type'], scope)
                args = _accepts(cls, part) if cls is not None else None
                if where == 'optim_wrapper' and part in _OPTIM_BUILDER_KEYS:
                    args = None  # taken by build_optim_wrapper, not the type
                if args is not None:
                    raise ConfigError(
                        f'--cfg-options {key}: {config_name} has no key '
                        f'{new!r}, and {where} is a '
                        f'{getattr(cls, "__name__", cls)}, which takes no '
                        f'argument {part!r} (it takes: {", ".join(args)}).' +
                        _close(part, args))
                if cls is None:
                    print_log(
                        f'--cfg-options {key}: adds {part!r} to {where} '
                        f'(type {node["type"]!r} could not be checked)',
                        logger='current')
            else:
                where_path = '.'.join(parts[:depth])
                known = _plain_dict_keys(where_path)
                if known is not None and part not in known:
                    raise ConfigError(
                        f'--cfg-options {key}: {config_name} has no key '
                        f'{new!r}, and {where_path} takes no key {part!r} '
                        f'(it takes: {", ".join(known)}).' +
                        _close(part, known))
                print_log(
                    f'--cfg-options {key}: adds new key {new!r}',
                    logger='current')
            break


def load_config_with_options(path: str, options: Optional[dict]) -> Config:
    """:func:`load_config` with ``--cfg-options`` merged in, each key
    checked against the config first (:func:`check_cfg_options`)."""
    cfg = load_config(path)
    check_cfg_options(cfg, options, path)
    if options:
        cfg.merge_from_dict(options)
    return cfg


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
_DATA_HINTS = {
    'CocoDataset': (
        'COCO 2017 belongs under data/coco/ (annotations/instances_'
        '{train,val}2017.json, train2017/, val2017/); download it from '
        'https://cocodataset.org or symlink an existing copy: '
        'ln -s /path/to/coco data/coco. See "Preparing data" in README.md.'),
    'ADE20KDataset': (
        'ADE20K belongs under data/ade/ADEChallengeData2016/ (images/ and '
        'annotations/ with training/ and validation/); unzip '
        'ADEChallengeData2016.zip from '
        'http://data.csail.mit.edu/places/ADEchallenge/ into data/ade/ or '
        'symlink it. See "Preparing data" in README.md.'),
}
_DEMO_HINT = ('This is the generated demo data: make it with '
              '`python -m mmext.datasets.demo --root {root}` '
              '(or run `make demo`), or point the demo configs at a copy '
              'made elsewhere with MMEXT_DEMO_DATA=/path/to/demo.')


def _hint(ds: dict, root: str) -> str:
    custom = os.environ.get('MMEXT_DEMO_DATA')
    if custom and str(root).startswith(custom):
        return _DEMO_HINT.format(root=custom)
    if 'demo' in str(root).replace('\\', '/').split('/'):
        top = str(root).split('demo')[0] + 'demo'
        return _DEMO_HINT.format(root=top)
    type_name = str(ds.get('type', '')).split('.')[-1]
    return _DATA_HINTS.get(
        type_name, 'Point data_root / ann_file / data_prefix at your copy '
        'with --cfg-options, or put the data where the config expects it.')


def check_data(cfg: Config, splits: Iterable[str]) -> None:
    """Raise :class:`FileNotFoundError` if the data of ``splits`` ('train',
    'val', 'test') is not where the config says."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or not loader.get('dataset'):
            continue
        for ds in _iter_datasets(loader['dataset']):
            root = ds.get('data_root') or ''
            where = f'{split}_dataloader.dataset'
            if root and not is_remote(root) and not osp.isdir(root):
                raise FileNotFoundError(
                    f'{where}: data_root {root!r} does not exist '
                    f'(resolved: {osp.abspath(root)}). {_hint(ds, root)}')
            paths = []
            ann = ds.get('ann_file')
            if ann:
                paths.append(('ann_file', ann))
            for k, v in (ds.get('data_prefix') or {}).items():
                if isinstance(v, str) and v:
                    paths.append((f'data_prefix.{k}', v))
            for what, rel in paths:
                path = rel if (osp.isabs(rel) or is_remote(rel)) else \
                    osp.join(root, rel)
                if is_remote(path):
                    continue
                if osp.exists(path):
                    if what == 'ann_file':
                        _check_annotation_file(path, f'{where}.ann_file',
                                               _hint(ds, root))
                    continue
                raise FileNotFoundError(
                    f'{where}: {what} {path!r} does not exist (data_root '
                    f'{root!r}). {_hint(ds, root)}')
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in (evaluator if isinstance(evaluator, (list, tuple))
                       else [evaluator]):
            ann = metric.get('ann_file') if isinstance(metric, dict) else None
            if not ann or is_remote(ann):
                continue
            ds = next(_iter_datasets(loader['dataset']), {}) \
                if loader else {}
            if not osp.exists(ann):
                raise FileNotFoundError(
                    f'{split}_evaluator: ann_file {ann!r} does not exist. '
                    f'{_hint(ds, ann)}')
            _check_annotation_file(ann, f'{split}_evaluator.ann_file',
                                   _hint(ds, ann))


def _check_annotation_file(path: str, where: str, hint: str) -> None:
    """Cheap checks of an annotation file that exists: a folder, unreadable,
    empty, or (JSON) cut short. Reading a whole COCO file here would double
    the start-up time, so a JSON file is judged by its first and last
    characters: a truncated one does not end with its closing bracket."""
    if osp.isdir(path):
        raise ConfigError(f'{where} {path!r} is a folder, not an annotation '
                          f'file. {hint}')
    if not os.access(path, os.R_OK):
        raise ConfigError(f'{where} {path!r} cannot be read (permission '
                          'denied); fix its permissions.')
    size = osp.getsize(path)
    if size == 0:
        raise ConfigError(f'{where} {path!r} is empty. {hint}')
    if not path.endswith('.json'):
        return
    with open(path, 'rb') as f:
        head = f.read(64).lstrip()
        f.seek(max(0, size - 64))
        tail = f.read().rstrip()
    if head[:1] not in (b'{', b'[') or tail[-1:] not in (b'}', b']'):
        raise ConfigError(
            f'{where} {path!r} is not complete JSON (it starts with '
            f'{head[:12]!r} and ends with {tail[-12:]!r}: cut short by an '
            f'interrupted download or copy?). {hint}')


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------
_CONVERTED = re.compile(r'^(?P<model>\w+)_(?P<size>[a-z0-9]+)_in1k\.pth$')


def _pretrained_hint(path: str, key: str) -> str:
    found = _CONVERTED.search(osp.basename(path))
    if found:
        model, size = found.group('model'), found.group('size')
        make = (f'make it from the official ImageNet-1k weights with: '
                f'python tools/convert_imagenet.py {model} '
                f'/path/to/{model}_{size}.pth {path}')
    else:
        make = ('make it with tools/convert_imagenet.py from the official '
                'ImageNet weights')
    return (f'{make} (see "Pretrained weights" in README.md), or train from '
            f'scratch with --cfg-options {key}=None')


def check_pretrained(cfg: Config) -> None:
    """Raise :class:`FileNotFoundError` if a local pretrained file named in
    ``model`` (``init_cfg=dict(type='Pretrained', ...)`` or
    ``pretrained=...``) is missing."""

    def walk(node: Any, path: str):
        if isinstance(node, dict):
            init = node.get('init_cfg')
            inits = init if isinstance(init, (list, tuple)) else [init]
            for i, item in enumerate(inits):
                if isinstance(item, dict) and item.get('type') == 'Pretrained':
                    ckpt = item.get('checkpoint')
                    key = f'{path}.init_cfg'
                    if isinstance(ckpt, str) and not is_remote(ckpt) \
                            and not osp.exists(ckpt):
                        raise FileNotFoundError(
                            f'pretrained weights {ckpt!r} ({key}.checkpoint) '
                            f'not found; {_pretrained_hint(ckpt, key)}.')
                    if isinstance(ckpt, str):
                        check_checkpoint(ckpt, f'pretrained weights '
                                         f'({key}.checkpoint)')
            pre = node.get('pretrained')
            if isinstance(pre, str) and not is_remote(pre) \
                    and not osp.exists(pre):
                key = f'{path}.pretrained'
                raise FileNotFoundError(
                    f'pretrained weights {pre!r} ({key}) not found; '
                    f'{_pretrained_hint(pre, key)}.')
            for k, v in node.items():
                if k != 'init_cfg':
                    walk(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}.{i}')

    walk(cfg.get('model'), 'model')


def check_checkpoint(path: Optional[str], what: str = 'checkpoint') -> None:
    """Raise a one-line error unless the local file ``path`` reads as a
    torch checkpoint (missing, folder, empty, truncated, text, untrusted
    pickle...). Complete files are mapped, not read, so this is cheap."""
    if not path or is_remote(path):
        return
    if not osp.exists(path):
        raise FileNotFoundError(f'{what} {path!r} not found.')
    from mmext.utils.checkpoint import (is_complete_checkpoint,
                                        load_checkpoint_file)
    load_checkpoint_file(path, map_location='cpu',
                         mmap=is_complete_checkpoint(path))
