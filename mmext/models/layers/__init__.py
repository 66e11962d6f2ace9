"""Building blocks shared by mmext backbones (torch / mmengine / mmcv only)."""
from .attention import SelfAttention, attend, merge_heads, split_heads
from .backbone_mixin import BackboneMixin, normalize_out_indices
from .ffn import MLP, ConvFFN
from .residual import scaled_residual
from .norm import LayerNorm2d
from .tokens import map_to_tokens, to_channels_last, tokens_to_map

__all__ = [
    'SelfAttention', 'attend', 'merge_heads', 'split_heads', 'BackboneMixin',
    'normalize_out_indices', 'MLP', 'ConvFFN', 'LayerNorm2d', 'scaled_residual',
    'map_to_tokens', 'to_channels_last', 'tokens_to_map'
]
