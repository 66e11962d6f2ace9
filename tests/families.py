"""The contract table: one line per backbone family.

Every family listed here runs the backbone contract test
(``tests/models/backbones/test_contract.py``) and, with a converter, the
converter contract test (``tests/converters/test_contract.py``).
"""
from typing import NamedTuple, Optional


class Family(NamedTuple):
    """Output channels and strides are not restated here: every backbone
    declares them (``out_channels`` / ``out_strides``), and the contract
    test checks the declaration against what it returns."""
    type: str  #: registry name (scope ``mmext``)
    arch: dict  #: a tiny arch (same code path, small dims)
    converter: Optional[str] = None
    kwargs: Optional[dict] = None  #: constructor arguments of the tests
    min_size: int = 32  #: smallest input side the tests use

    @property
    def id(self) -> str:
        return self.type

    def build(self, **kwargs):
        import mmext.models  # noqa: F401
        from mmext.registry import MODELS
        cfg = dict(type=f'mmext.{self.type}',
                   arch=self.arch,
                   drop_path_rate=0.)
        cfg.update(self.kwargs or {})
        cfg.update(kwargs)
        return MODELS.build(cfg)


#: distinct widths per stage (catches mix-ups), two blocks in stage 2 (the
#: odd block uses mlp_ratio - 1) and in stage 3 (a merge block before the
#: last one)
DUALVIT_TINY = dict(stem_width=8,
                    embed_dims=[8, 16, 24, 32],
                    num_heads=[1, 2, 2, 2],
                    mlp_ratios=[2, 2, 3, 2],
                    depths=[1, 2, 2, 2])
ELSA_TINY = dict(embed_dims=8,
                 depths=[1, 1, 1, 2],
                 num_heads=[1, 2, 2, 4],
                 group_width=4)

SHUFFLE_SWIN_TINY = dict(embed_dims=8,
                         depths=[2, 2, 2, 2],
                         num_heads=[1, 1, 2, 2])
SHUFFLE_VIT_TINY = dict(embed_dims=32, depth=3, num_heads=2, patch_size=8)

FAMILIES = [
    Family('DualViT', DUALVIT_TINY, 'dualvit'),
    Family('ELSASwin', ELSA_TINY, 'elsa_swin'),
    Family('AViT', dict(embed_dims=48, depth=4, num_heads=3, patch_size=16),
           'avit', dict(out_indices=(0, 1, 2, 3),
                        gate_center=1.)),  # some tokens halt
    Family('ShuffleSwin', SHUFFLE_SWIN_TINY, 'shuffle_swin'),
    Family('ShuffleViT', SHUFFLE_VIT_TINY, 'shuffle_vit',
           dict(img_size=32, out_indices=(0, 1, 2))),
]
