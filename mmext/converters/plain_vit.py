"""What the converters of the plain-ViT families (A-ViT, Shuffle DeiT)
share: timm DeiT keys, the arch read from the shapes, and the classifier
layout (mmpretrain ``ImageClassifier`` with the backbone's
``out_type='cls_token'`` and ``VisionTransformerClsHead``)."""
from typing import List

from .base import Converter, Rule, timm_vit_rules, timm_vit_shapes, with_prefix


class PlainViTConverter(Converter):
    """Base of the plain-ViT converters: a family declares
    :meth:`vit_rules` (its keys besides timm's embeddings and blocks) and
    :meth:`classifier_backbone_kwargs`."""
    head_keys = (r'head\.', )
    #: a converted detector's per-output norms ``norm{i}`` are kept
    out_norms = False

    def infer_arch(self, state) -> dict:
        # the number of heads leaves no trace: a custom size gives it with
        # --arch (the released ones are matched by the rest)
        return timm_vit_shapes(state)

    def vit_rules(self, settings: dict) -> List[Rule]:
        """The family's rules after timm's embeddings and blocks."""
        return []

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        rules = timm_vit_rules() + self.vit_rules(settings)
        if not keep_head:
            return rules + ([Rule('norm{i}.', 'norm{i}.')]
                            if self.out_norms else [])
        return [Rule('head.', 'head.layers.head.')] + with_prefix(
            rules, 'backbone.')

    def classifier_backbone_kwargs(self, meta: dict) -> dict:
        """Backbone arguments of the classifier besides the arch."""
        return {}

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        settings = self.backbone.parse_arch(arch)
        return dict(
            type='ImageClassifier',
            backbone=dict(type=f'mmext.{self.backbone.__name__}',
                          arch=arch,
                          out_type='cls_token',
                          drop_path_rate=0.,
                          **self.classifier_backbone_kwargs(meta)),
            neck=None,
            head=dict(type='VisionTransformerClsHead',
                      num_classes=num_classes,
                      in_channels=settings['embed_dims']))
