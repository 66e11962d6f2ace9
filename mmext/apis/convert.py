"""Convert an official ImageNet checkpoint to mmext's layout
(``tools/convert_imagenet.py``).

    python tools/convert_imagenet.py FAMILY SRC DST [--keep-head] [--force]
                                     [--arch NAME|JSON] [family options]

``python tools/convert_imagenet.py FAMILY --help`` lists a family's options.

SRC may be a bare state dict or one wrapped in ``state_dict``, ``model`` or
``state_dict_ema``, with or without ``module.`` prefixes. The variant is
inferred from the tensor shapes (``--arch`` for custom shapes). Without
``--keep-head`` the result is a backbone checkpoint for
``init_cfg=dict(type='Pretrained', checkpoint=DST)``; with it, a full
mmpretrain ``ImageClassifier`` checkpoint (``backbone.*`` + ``head.*``) to
check the conversion on ImageNet val. DST is written atomically, only after
the converted weights were checked to load into the inferred architecture,
and never over an existing file unless ``--force``.
"""
import argparse
import json

from mmext.converters import (ConversionError, available_converters,
                              convert_checkpoint, converter_class)
from .launch import user_errors

#: arguments every family has (the rest are the family's own options)
_COMMON = ('family', 'src', 'dst', 'keep_head', 'force', 'arch', 'debug')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='convert_imagenet.py',
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    families = parser.add_subparsers(dest='family', required=True,
                                     metavar='FAMILY',
                                     help=', '.join(available_converters()))
    for name in available_converters():
        sub = families.add_parser(name, help=f'official {name} checkpoints')
        sub.add_argument('src', help='official checkpoint')
        sub.add_argument('dst', help='converted checkpoint to write')
        sub.add_argument('--keep-head', action='store_true',
                         help='keep the classifier (writes an mmpretrain '
                         'ImageClassifier checkpoint)')
        sub.add_argument('--force', action='store_true',
                         help='overwrite DST if it exists')
        sub.add_argument('--arch', help='architecture when the shapes match '
                         'no released variant: a name or a JSON dict')
        sub.add_argument('--debug', action='store_true',
                         help='show the full traceback of an error')
        converter_class(name).add_arguments(sub)
    return parser.parse_args(argv)


def parse_arch(text):
    """``--arch``: a name as it is, a JSON object as a dict."""
    if not text or not text.lstrip().startswith('{'):
        return text
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConversionError(
            f'--arch {text!r} is not valid JSON ({err.msg} at character '
            f'{err.pos}); write it like \'{{"embed_dims": [64, 128, 320, '
            '448], ...}\' with double quotes, or give an arch name') from None
    if not isinstance(arch, dict):
        raise ConversionError(f'--arch {text!r} is not a JSON object')
    return arch


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        # one line on stderr per failure (the traceback with --debug)
        with user_errors('convert_imagenet.py', debug=args.debug,
                         extra=(ConversionError, )):
            report = convert(args)
    except SystemExit as failed:
        return failed.code
    if report.get('model_cfg'):
        print('model config for mmpretrain (load_from=DST):')
        print(json.dumps(report['model_cfg'], indent=2))
    else:
        print("use it with init_cfg=dict(type='Pretrained', "
              f"checkpoint='{args.dst}') on the backbone "
              f"(arch={report['arch'] or report['arch_settings']!r})")
    return 0


def convert(args) -> dict:
    """Run the conversion the parsed arguments ask for; returns the
    report of :func:`~mmext.converters.convert_checkpoint`."""
    options = {k: v for k, v in vars(args).items() if k not in _COMMON}
    return convert_checkpoint(
        args.family, args.src, args.dst, keep_head=args.keep_head,
        force=args.force, arch=parse_arch(args.arch), log=print, **options)
