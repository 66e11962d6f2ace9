"""Building blocks shared by mmext backbones (torch / mmengine / mmcv only)."""
from .attention import SelfAttention, attend, merge_heads, split_heads
from .channel_shuffle import ChannelShuffleMixin, channel_shuffle
from .backbone_mixin import BackboneMixin, normalize_out_indices
from .ffn import MLP, ConvFFN
from .residual import scaled_residual
from .tokens import map_to_tokens, to_channels_last, tokens_to_map

__all__ = [
    'ChannelShuffleMixin', 'channel_shuffle',
    'SelfAttention', 'attend', 'merge_heads', 'split_heads', 'BackboneMixin',
    'normalize_out_indices', 'MLP', 'ConvFFN', 'scaled_residual',
    'map_to_tokens', 'to_channels_last', 'tokens_to_map'
]
