"""mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` with the
checkpoint checked before it is loaded.

The upstream inferencers load any checkpoint non-strictly (keys that do not
fit only warn, the rest of the model stays random) and label a checkpoint
without class names with COCO / Cityscapes classes (an ADE20K model then
draws only its first 19 classes). :class:`StrictDetInferencer` and
:class:`StrictSegInferencer` refuse a checkpoint that does not fit the model
and take the class names and palette from the config when the checkpoint
has none; everything else is upstream's.
"""
import copy

import torch
from mmdet.apis import DetInferencer
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.apis import MMSegInferencer

from mmext.errors import CorruptCheckpointError
from mmext.utils.checkpoint import (check_finite_weights,
                                    check_state_dict_fits, state_dict_from)
from .config_check import config_task

__all__ = ['StrictDetInferencer', 'StrictSegInferencer', 'build_inferencer',
           'config_metainfo', 'inference_state_dict']


def inference_state_dict(model: torch.nn.Module, checkpoint, path: str,
                         strict: bool = True) -> dict:
    """The one place where a checkpoint is checked before an inferencer
    loads it into ``model``: its state dict (``state_dict`` / ``model`` /
    ``state_dict_ema``, ``module.`` prefixes removed), which must have
    exactly the model's keys and shapes unless ``strict=False``, and
    only finite numbers."""
    try:
        state = state_dict_from(checkpoint)
    except ValueError as err:
        raise CorruptCheckpointError(f'{path}: {err}') from None
    if strict:
        check_state_dict_fits(
            model, state, f'checkpoint {path}',
            'Give the checkpoint trained with this config (tools/train.py '
            'saves it in the work dir) or the config it was trained with; '
            '--allow-mismatch loads it anyway.')
    # NaN / inf weights draw nothing meaningful, whatever ``strict`` says
    check_finite_weights(state, f'checkpoint {path}')
    return state


def config_metainfo(cfg: Config, scope: str) -> dict:
    """Classes and palette of the config's test dataset (its ``metainfo``
    or the dataset class's own), read without loading any annotation."""
    if scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    dataset = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset['lazy_init'] = True
    with DefaultScope.overwrite_default_scope(scope):
        meta = DATASETS.build(dataset).metainfo
    return dict(classes=meta['classes'], palette=meta.get('palette'))


class _CheckedWeights:
    """Mixed in before an upstream inferencer: loads the state dict that
    :func:`inference_state_dict` checked, and gives a checkpoint without
    class names those of the config."""

    def __init__(self, model, weights, *args, strict: bool = True,
                 **kwargs):
        if weights is None:
            raise ValueError(f'{type(self).__name__} needs a checkpoint')
        self.weights_path, self.strict = weights, strict
        super().__init__(model, weights, *args, **kwargs)

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        state = inference_state_dict(model, checkpoint, self.weights_path,
                                     self.strict)
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) \
            else None
        meta = dict(meta) if isinstance(meta, dict) else {}
        if not meta.get('dataset_meta'):
            meta['dataset_meta'] = config_metainfo(cfg, self.scope)
        super()._load_weights_to_model(
            model, dict(state_dict=state, meta=meta), cfg)


class StrictDetInferencer(_CheckedWeights, DetInferencer):
    """mmdet's ``DetInferencer``; the checkpoint must fit the model, and
    class names come from the config when it has none."""


class StrictSegInferencer(_CheckedWeights, MMSegInferencer):
    """mmseg's ``MMSegInferencer``, checked as :class:`StrictDetInferencer`.
    """


def build_inferencer(cfg: Config, checkpoint: str, device: str = 'cpu',
                     strict: bool = True, tool: str = 'build_inferencer'):
    """The strict inferencer of the config's task (its ``default_scope``),
    without progress bars."""
    scope = config_task(cfg, tool)
    kind = StrictDetInferencer if scope == 'mmdet' else StrictSegInferencer
    inferencer = kind(cfg, checkpoint, device=device, strict=strict)
    inferencer.show_progress = False
    return inferencer
