"""LayerNorms that normalise in float32 under mixed precision (see
:mod:`mmext.utils.precision`), and the channel LayerNorm for NCHW maps."""
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from torch import Tensor

from mmext.registry import MODELS
from mmext.utils.precision import layer_norm


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and keys) computed in float32 for
    float16 / bfloat16 inputs; under autocast its output stays float32."""

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.normalized_shape, self.weight, self.bias,
                          self.eps)


def fp32_norm(layer: nn.Module) -> nn.Module:
    """A plain ``nn.LayerNorm`` (e.g. built inside an mmcv brick) as a
    :class:`LayerNorm` with the same parameters; other layers as they
    are."""
    if type(layer) is not nn.LayerNorm:
        return layer
    norm = LayerNorm(layer.normalized_shape, layer.eps,
                     layer.elementwise_affine, bias=layer.bias is not None)
    norm.load_state_dict(layer.state_dict())
    for ours, theirs in zip(norm.parameters(), layer.parameters()):
        ours.requires_grad_(theirs.requires_grad)
    return norm


def build_norm(cfg: dict, num_features: int) -> nn.Module:
    """mmcv's ``build_norm_layer(cfg, num_features)[1]``, a LayerNorm
    computed as :class:`LayerNorm`."""
    return fp32_norm(build_norm_layer(cfg, num_features)[1])


@MODELS.register_module(name='LN2d')
class LayerNorm2d(LayerNorm):
    """LayerNorm over the channels of an NCHW map (ViTDet's ``LN2d``);
    ``norm_cfg=dict(type='mmext.LN2d')`` from any scope."""

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x.permute(0, 2, 3, 1))
        return x.permute(0, 3, 1, 2)
