"""tools/visualize_halting.py (mmext.apis.visualize_halting) on a tiny A-ViT
checkpoint."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmext.apis import visualize_halting as tool
from mmext.converters import convert_checkpoint, get_converter
from mmext.models.backbones.avit import AViT

TINY = dict(embed_dims=48, depth=4, num_heads=3, patch_size=16)


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    model = AViT(arch=TINY)
    model.init_weights()
    official = get_converter('avit').to_official(model.state_dict(), TINY)
    # a file as the official release names them: gate 10/0 (from the name)
    # halts some tokens of a random model early
    src, ckpt = tmp_path / 'tiny-10-0.pth', tmp_path / 'avit.pth'
    torch.save({'model': official}, src)
    convert_checkpoint('avit', str(src), str(ckpt), arch=TINY)
    image = tmp_path / 'image.jpg'
    Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (97, 131, 3),
                                          dtype=np.uint8)).save(image)
    return ckpt, image, tmp_path / 'depth.png'


def test_draws_depth_map(files, capsys):
    ckpt, image, out = files
    assert tool.main([str(image), str(out), '--checkpoint', str(ckpt)]) == 0
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '7x9 tokens' in capsys.readouterr().out
    # the map the tool drew is the backbone's depth per patch token
    model = tool.load_backbone(str(ckpt))
    depth = tool.depth_map(model, tool.read_image(str(image)))
    assert depth.shape == (7, 9) and 1 <= depth.min() < depth.max() <= 4


def test_errors(files, tmp_path, capsys):
    ckpt, image, out = files
    out.write_bytes(b'old')
    assert tool.main([str(image), str(out), '--checkpoint', str(ckpt)]) == 1
    assert 'exists' in capsys.readouterr().err and out.read_bytes() == b'old'
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'conv.weight': torch.zeros(1)}), other)
    assert tool.main([str(image), str(out), '--checkpoint', str(other),
                      '--force']) == 1
    assert 'no mmext A-ViT weights' in capsys.readouterr().err
    assert tool.main([str(image), str(out), '--checkpoint', str(ckpt),
                      '--arch', 'small', '--force']) == 1
    assert 'does not fit A-ViT arch' in capsys.readouterr().err
    assert tool.main([str(tmp_path / 'none.jpg'), str(out), '--checkpoint',
                      str(ckpt), '--force']) == 1
    assert 'no image' in capsys.readouterr().err
