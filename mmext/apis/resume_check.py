"""Resume only into the model a checkpoint was saved from.

mmengine resumes into any model: keys of another shape are skipped with
warnings, the run says it resumed, and the optimizer state then fails with
a bare ``RuntimeError``. :func:`check_resume_fits` compares the checkpoint
with the config's model before anything is built for real or written: the
model is built on the ``meta`` device (shapes only, no memory, no weight
initialisation), and the message has the counts and examples of
``tools/test.py``'s refusal. NaN or inf weights or optimizer state are
refused too.
"""
import copy

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch import nn

from mmext.errors import NonFiniteCheckpointError
from mmext.utils.checkpoint import (check_finite_weights,
                                    check_state_dict_fits,
                                    is_complete_checkpoint,
                                    load_checkpoint_file, nonfinite_report,
                                    state_dict_from)


def build_model_skeleton(cfg: Config) -> nn.Module:
    """The config's model with the right keys and shapes, built on the meta
    device (on the CPU if a module cannot be built there)."""
    model_cfg = copy.deepcopy(cfg.model)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        try:
            with torch.device('meta'):
                return MODELS.build(model_cfg)
        except Exception:  # noqa: BLE001 - e.g. a .item() at construction
            return MODELS.build(copy.deepcopy(cfg.model))


def check_resume_fits(cfg: Config, path: str) -> None:
    """Raise a one-line error unless the training checkpoint ``path`` fits
    ``cfg.model`` exactly and holds only finite numbers."""
    checkpoint = load_checkpoint_file(path, map_location='cpu',
                                      mmap=is_complete_checkpoint(path))
    state = state_dict_from(checkpoint)
    check_state_dict_fits(
        build_model_skeleton(cfg), state, f'checkpoint {path}',
        'It was saved from another model: resume with the config it was '
        'trained with, or start from its weights without --resume '
        f'(--cfg-options load_from={path}).')
    check_finite_weights(
        state, f'checkpoint {path}',
        'Resume from an earlier checkpoint of the run (--resume PATH).')
    report = nonfinite_report(checkpoint.get('optimizer', {}))
    if report:
        raise NonFiniteCheckpointError(
            f'checkpoint {path} has a non-finite optimizer state: {report}. '
            'Resume from an earlier checkpoint of the run (--resume PATH).')
