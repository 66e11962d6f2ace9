"""Any detection or segmentation config, made cheap to build and run: the
backbone becomes its family's tiny arch (``tests/families.py``), the neck
and heads ``width`` channels wide, the test scale small. Everything else
(model types, wrappers, pipeline steps, dataset, visualizer) stays the
config's own."""
import glob
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from tests.families import FAMILIES

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: every detection / segmentation / demo config (not the _base_ parts)
CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '/_base_/' not in p)

_TINY = {family.type: family for family in FAMILIES}


def _backbone_channels(backbone: dict) -> list:
    import mmext.models  # noqa: F401
    from mmext.registry import MODELS
    with torch.no_grad():
        feats = MODELS.build(backbone).eval()(torch.zeros(1, 3, 64, 64))
    return [f.shape[1] for f in feats]


def _tiny_backbone(cfg: Config) -> list:
    backbone = cfg.model.backbone
    family = _TINY[backbone.type.split('.')[-1]]
    arch = dict(family.arch)
    if 'patch_size' in arch:  # the configs' pyramids expect stride 16
        arch['patch_size'] = 16
    backbone.arch = arch
    backbone.init_cfg = None
    backbone.drop_path_rate = 0.
    for key, value in (family.kwargs or {}).items():
        if key not in ('out_indices', 'img_size'):
            backbone[key] = value  # e.g. A-ViT gates that make tokens halt
    return _backbone_channels(backbone)


def _neck(cfg: Config, channels: list, width: int) -> list:
    """Set the neck's widths; returns what the heads receive."""
    neck = cfg.model.get('neck')
    if neck is None:
        return channels
    pyramid = neck.type == 'mmext.SimpleFeaturePyramid'
    neck.in_channels = channels[-1] if pyramid else channels
    neck.out_channels = width
    levels = len(neck.get('scale_factors', channels))
    return [width] * levels


def _tiny_detector(cfg: Config, channels: list, width: int) -> None:
    _neck(cfg, channels, width)
    model = cfg.model
    model.rpn_head.in_channels = model.rpn_head.feat_channels = width
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = width
    heads = roi.bbox_head if isinstance(roi.bbox_head, list) \
        else [roi.bbox_head]
    for head in heads:
        head.in_channels, head.fc_out_channels = width, 2 * width
        if 'conv_out_channels' in head:
            head.conv_out_channels = width
    roi.mask_roi_extractor.out_channels = width
    roi.mask_head.in_channels = roi.mask_head.conv_out_channels = width
    # a few proposals; every class score kept, so that random weights
    # still give detections (and masks) to draw and save
    model.test_cfg.rpn.update(nms_pre=100, max_per_img=20)
    model.test_cfg.rcnn.update(score_thr=0., max_per_img=5)


def _tiny_segmentor(cfg: Config, channels: list, width: int) -> None:
    feeds = _neck(cfg, channels, width)
    model = cfg.model
    model.decode_head.in_channels = feeds
    model.decode_head.channels = width
    aux = model.get('auxiliary_head')
    if aux is not None:
        aux.in_channels = feeds[aux.in_index]
        aux.channels = width


def tiny_config(path: str, width: int = 16, scale=(96, 64)) -> Config:
    """The config at ``path`` with a tiny model, tested at ``scale``."""
    cfg = Config.fromfile(path)
    channels = _tiny_backbone(cfg)
    if cfg.default_scope == 'mmdet':
        _tiny_detector(cfg, channels, width)
    else:
        _tiny_segmentor(cfg, channels, width)
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = scale
    return cfg


def build_model(cfg: Config, seed: int = 0):
    """The config's model with random weights, in its scope."""
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model).eval()


def save_checkpoint(model, path: str,
                    dataset_meta: Optional[dict] = None) -> str:
    """Save ``model`` as tools/train.py does (state dict, meta with the
    data set's classes, the message hub's history buffers); without
    ``dataset_meta``, as a bare ``{'state_dict': ...}``."""
    checkpoint = dict(state_dict=model.state_dict())
    if dataset_meta is not None:
        from mmengine.logging import MessageHub
        hub = MessageHub.get_instance('tiny_configs')
        hub.update_scalar('train/loss', 1.0)
        checkpoint.update(
            meta=dict(dataset_meta=dataset_meta, epoch=1, iter=1),
            message_hub=hub.state_dict())
    torch.save(checkpoint, path)
    return str(path)
