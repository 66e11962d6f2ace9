"""Adds a backbone's own loss terms to a detector's or segmentor's."""
from typing import Dict

from torch import Tensor

__all__ = ['BackboneLossMixin']


class BackboneLossMixin:
    """Mix in before an mmdet detector or mmseg segmentor class:
    ``loss()`` adds ``self.backbone.losses()``, the terms the backbone
    recorded in the forward just run by the parent's ``loss()``. mmengine
    sums the keys that contain ``loss`` and only logs the others (A-ViT's
    ``mean_depth``)."""

    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        losses = super().loss(inputs, data_samples)
        extra = self.backbone.losses()
        clash = sorted(set(extra) & set(losses))
        if clash:
            raise KeyError(f'backbone loss keys {clash} clash with the '
                           f'{type(self).__name__} losses')
        losses.update(extra)
        return losses
