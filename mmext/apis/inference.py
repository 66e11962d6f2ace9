"""``tools/infer.py``: predictions of a detector or a segmentor on images,
drawn and raw, through mmdet's ``DetInferencer`` / mmseg's
``MMSegInferencer``.

Examples::

    python tools/infer.py CONFIG CKPT demo.jpg                 # one image
    python tools/infer.py CONFIG CKPT images/ --out-dir out/   # a folder
    python tools/infer.py CONFIG CKPT 'shots/*.png' --device cuda:0

Writes ``OUT/vis/<name>.jpg`` (the prediction drawn on the image) and
``OUT/preds/<name>.json`` (detection: every box, score, label and RLE mask
the model returns; segmentation: the classes, with the label map in
``OUT/preds/<name>.png``), each atomically.

The model comes from :mod:`mmext.apis.inferencers` (the upstream
inferencers, with the checkpoint checked). Every input is checked before
the model is built.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction

from mmext.errors import ConfigError
from mmext.utils.fileio import atomic_write
from .config_check import (check_checkpoint, check_output_path,
                           config_task, load_config_with_options)
from .image_inputs import check_images, find_images
from .launch import user_errors

TOOL = 'tools/infer.py'


# --------------------------------------------------------------------------
# one image in, files out
# --------------------------------------------------------------------------
def predict(inferencer, path: str, score_thr: float = 0.3):
    """``(drawing, prediction)`` for the image at ``path``: the drawing is
    an RGB array; the prediction is mmdet's dict of lists (labels, scores,
    bboxes, RLE masks) or mmseg's label map (an ``(H, W)`` array)."""
    if inferencer.scope == 'mmdet':
        out = inferencer(path, return_vis=True, pred_score_thr=score_thr)
        return out['visualization'][0], out['predictions'][0]
    out = inferencer(path, return_vis=True)
    return out['visualization'], out['predictions']


def output_files(path: str, out_dir: str, task: str) -> List[str]:
    """What :func:`write_prediction` writes for the image at ``path``."""
    stem = osp.splitext(osp.basename(path))[0]
    files = [osp.join(out_dir, 'vis', stem + '.jpg'),
             osp.join(out_dir, 'preds', stem + '.json')]
    if task == 'mmseg':
        files.append(osp.join(out_dir, 'preds', stem + '.png'))
    return files


def _encode(ext: str, img: np.ndarray) -> bytes:
    import cv2
    ok, data = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError(f'OpenCV could not encode a {ext} image')
    return data.tobytes()


def write_prediction(files: Sequence[str], drawing: np.ndarray, pred,
                     record: dict, force: bool) -> None:
    """Write the drawing, the raw results and (segmentation) the label
    map, each complete or not at all."""
    with atomic_write(files[0], 'wb', force=force) as f:
        f.write(_encode('.jpg', np.ascontiguousarray(drawing[..., ::-1])))
    if len(files) == 3:  # segmentation: class indices, 16 bit past 256
        labels = pred.astype(np.uint8 if pred.max() < 256 else np.uint16)
        with atomic_write(files[2], 'wb', force=force) as f:
            f.write(_encode('.png', labels))
        counts = np.bincount(pred.ravel(), minlength=len(record['classes']))
        record = dict(record, label_map=osp.basename(files[2]),
                      pixels=counts.tolist())
    else:
        record = dict(record, **pred)
    with atomic_write(files[1], 'w', force=force) as f:
        json.dump(record, f)


def refuse_overwrite(plan: Dict[str, List[str]], out_dir: str,
                     force: bool) -> None:
    """Without ``force``: refuse if any planned file exists, or if two
    images would write the same file. Other files in ``out_dir`` are
    never touched."""
    seen: Dict[str, str] = {}
    for image, files in plan.items():
        for file in files:
            if file in seen:
                raise ConfigError(
                    f'{seen[file]} and {image} would both be written to '
                    f'{file}; give images with different names (run them '
                    'separately, with another --out-dir).')
            seen[file] = image
    existing = [f for f in seen if osp.exists(f)]
    if existing and not force:
        raise FileExistsError(
            f'--out-dir {out_dir} already holds {len(existing)} of the '
            f'{len(seen)} files this run would write (e.g. {existing[0]}); '
            'pass --force to overwrite them, or give another --out-dir.')


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------
def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'{text} is not between 0 and 1')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Predict on images with a detector or segmentor '
        '(mmdet or mmseg config + checkpoint); writes drawings and raw '
        'results.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        'inputs', nargs='+',
        help='images, folders (their images) or quoted globs '
        "('dir/**/*.jpg')")
    parser.add_argument(
        '--out-dir',
        help='where vis/ and preds/ go (default: work_dirs/<config '
        'name>/infer)')
    parser.add_argument(
        '--device', help='cpu, cuda or cuda:N (default: cuda:0 if there is '
        'a GPU, else cpu)')
    parser.add_argument(
        '--score-thr', type=_threshold, default=0.3,
        help='detection: draw boxes scoring at least this (default 0.3); '
        'the json keeps every prediction')
    parser.add_argument(
        '--force', action='store_true',
        help='overwrite files of an earlier run in --out-dir')
    parser.add_argument(
        '--allow-mismatch', action='store_true',
        help='load a checkpoint whose keys or shapes do not fit the model '
        '(by default refused: the rest of the model would stay random)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys; a key that does not exist is an error')
    parser.add_argument(
        '--debug', action='store_true',
        help='show the full traceback of an error')
    return parser.parse_args(argv)


def _device(name: Optional[str]) -> str:
    if name is None:
        return 'cuda:0' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {name}: no CUDA device is available '
                          'here; use --device cpu.')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'--device {name!r} is not a device; use cpu, '
                          'cuda or cuda:N.') from None
    count = torch.cuda.device_count()
    if device.type == 'cuda' and (device.index or 0) >= count:
        raise ConfigError(f'--device {name}: this machine has {count} GPU(s)'
                          f', cuda:0 to cuda:{count - 1}.')
    return name


def setup(args) -> Tuple[Config, str, Dict[str, tuple], Dict[str, list]]:
    """Every check that needs no model: the config, the checkpoint file,
    the images, the output files and the device. Returns the config, the
    out dir, ``{image: (h, w)}`` and ``{image: files to write}``."""
    cfg = load_config_with_options(args.config, args.cfg_options)
    task = config_task(cfg, TOOL)
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline')
    if not pipeline or 'visualizer' not in cfg:
        raise ConfigError(
            f'config {args.config} has no test_dataloader.dataset.pipeline '
            'or no visualizer; the inferencers build from both (inherit '
            'the mmdet / mmseg dataset and default_runtime bases).')
    check_checkpoint(args.checkpoint, 'checkpoint')
    sizes = check_images(find_images(args.inputs), pipeline)
    out_dir = args.out_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0], 'infer')
    check_output_path(out_dir, '--out-dir', folder=True)
    plan = {image: output_files(image, out_dir, task) for image in sizes}
    refuse_overwrite(plan, out_dir, args.force)
    args.device = _device(args.device)
    return cfg, out_dir, sizes, plan


def main(argv=None):
    args = parse_args(argv)
    with user_errors(osp.basename(sys.argv[0]), debug=args.debug):
        return run(args)


def run(args) -> Dict[str, list]:
    cfg, out_dir, sizes, plan = setup(args)
    from .inferencers import build_inferencer  # imports mmdet/mmseg apis
    inferencer = build_inferencer(cfg, args.checkpoint, args.device,
                                  strict=not args.allow_mismatch, tool=TOOL)
    classes = list(inferencer.model.dataset_meta['classes'])
    for image, files in plan.items():
        try:
            drawing, pred = predict(inferencer, image, args.score_thr)
        except Exception as err:  # noqa: BLE001 - name the image
            raise RuntimeError(f'predicting {image}: {type(err).__name__}: '
                               f'{err}') from err
        record = dict(image=image, height=sizes[image][0],
                      width=sizes[image][1], config=args.config,
                      checkpoint=args.checkpoint, classes=classes)
        if inferencer.scope == 'mmdet':
            record['score_thr_drawn'] = args.score_thr
            shown = sum(s >= args.score_thr for s in pred['scores'])
            what = f'{shown} of {len(pred["scores"])} detections drawn'
        else:
            what = f'{len(np.unique(pred))} classes present'
        write_prediction(files, drawing, pred, record, args.force)
        print(f'{image}: {what} -> {files[0]}', flush=True)
    print(f'{len(plan)} image(s): drawings in {osp.join(out_dir, "vis")}, '
          f'raw results in {osp.join(out_dir, "preds")}', flush=True)
    return plan
