"""Building blocks shared by mmext backbones (torch / mmengine / mmcv only)."""
from .attention import SelfAttention, attend, merge_heads, split_heads
from .blocks import PreNormBlock, SwinBlock, build_ffn
from .channel_shuffle import ChannelShuffleMixin, channel_shuffle
from .checkpoint import maybe_checkpoint
from .ffn import MLP, ConvFFN
from .pos_embed import resize_pos_embed
from mmext.utils.precision import layer_norm, softmax, upcast
from .norm import LayerNorm, LayerNorm2d, build_norm, fp32_norm
from .residual import scaled_residual
from .tokens import (build_patch_embed, map_to_tokens, to_channels_last,
                     tokens_to_map)
from .window_attention import (ShiftWindowMSA, WindowMSA,
                               relative_position_index)

__all__ = [
    'SelfAttention', 'attend', 'merge_heads', 'split_heads', 'PreNormBlock',
    'ChannelShuffleMixin', 'channel_shuffle', 'SwinBlock', 'build_ffn',
    'maybe_checkpoint', 'MLP', 'ConvFFN', 'LayerNorm', 'LayerNorm2d',
    'build_norm', 'fp32_norm', 'layer_norm', 'softmax', 'upcast',
    'resize_pos_embed',
    'scaled_residual', 'map_to_tokens', 'to_channels_last', 'tokens_to_map',
    'build_patch_embed', 'ShiftWindowMSA', 'WindowMSA',
    'relative_position_index'
]
