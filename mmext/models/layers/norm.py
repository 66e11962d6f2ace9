"""Channel LayerNorm for NCHW maps."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmext.registry import MODELS


@MODELS.register_module(name='LN2d')
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ViTDet's ``LN2d``);
    ``norm_cfg=dict(type='mmext.LN2d')`` from any scope."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)
