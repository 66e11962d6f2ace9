"""Necks mmdet / mmseg lack: one pyramid for every plain ViT."""
from .simple_feature_pyramid import SimpleFeaturePyramid

__all__ = ['SimpleFeaturePyramid']
