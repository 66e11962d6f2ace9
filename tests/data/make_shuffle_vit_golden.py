#!/usr/bin/env python
"""Regenerate ``shuffle_vit_golden.pth`` from the AUTHORS' Shuffle DeiT code.

    PYTHONPATH=/path/to/timm-0.4.12 python \
        tests/data/make_shuffle_vit_golden.py /path/to/deit OUT.pth

``/path/to/deit`` is a checkout of github.com/Ackesnal/deit at commit 65ee472
(branch ``dense``); its ``models.ShuffleVisionTransformer`` runs unchanged,
built with a tiny arch and the input size through its constructor arguments
(as ``deit_tiny_shuffle_patch16_224`` builds it: qkv bias, LayerNorm eps 1e-6
in the blocks). Needs timm 0.4.12 and no mmext.

The model runs in float64 (the input and the loss weights are float32
numbers, stored as such). All parameters are random. Stored: the input, the
logits, the tokens after the last block (the input of the final norm, patch
tokens as ``(B, C, H, W)``), the attended half of the input of block
``MID_BLOCK`` (patch tokens), the weights ``w`` of the scalar
``sum(w_logits * logits) + sum(w_last * last_tokens)`` and its float64
gradients w.r.t. the input and every parameter (the authors' names).
"""
import argparse
import os.path as osp
import sys
from functools import partial

import torch
import torch.nn as nn

#: the authors' constructor arguments (a tiny arch)
ARCH = dict(
    img_size=(48, 48),  # square: converted checkpoints keep one side
    patch_size=8,
    embed_dim=16,  # the attended half; tokens are twice as wide
    depth=3,
    num_heads=2,
    mlp_ratio=4,
    qkv_bias=True,
    num_classes=10)
BATCH = 2
MID_BLOCK = 1
SEED = 0


def randomize_(model, gen):
    """Random values for every parameter, scaled so activations stay O(1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and name not in ('cls_token', 'pos_embed'):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) *
                        p[0].numel()**-0.5)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * torch.randn(
                    p.shape, generator=gen, dtype=p.dtype))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen,
                                          dtype=p.dtype))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('repo', help='checkout of Ackesnal/deit (65ee472)')
    parser.add_argument('out')
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.repo))
    from models import ShuffleVisionTransformer

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = ShuffleVisionTransformer(
        norm_layer=partial(nn.LayerNorm, eps=1e-6), **ARCH).double().eval()
    randomize_(model, gen)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    # the final norm is the shared per-block norm called once more: its
    # last call's input is the output of the last block
    record = dict(on=True, norm_inputs=[], mid=None)

    def norm_hook(module, inputs):
        if record['on']:
            record['norm_inputs'].append(inputs[0])

    def mid_hook(module, inputs):
        if record['on'] and record['mid'] is None:
            record['mid'] = inputs[0]

    model.norm.register_forward_pre_hook(norm_hook)
    model.blocks[MID_BLOCK].register_forward_pre_hook(mid_hook)

    h, w = ARCH['img_size']
    grid = (h // ARCH['patch_size'], w // ARCH['patch_size'])
    x = torch.randn(BATCH, 3, h, w, generator=gen).double()
    x.requires_grad_(True)
    logits = model(x)
    record['on'] = False  # the blocks are re-run (checkpointed) in backward

    def patch_map(tokens):
        return tokens[:, 1:].transpose(1, 2).reshape(BATCH, -1, *grid)

    assert len(record['norm_inputs']) == ARCH['depth'] + 1
    last = patch_map(record['norm_inputs'][-1])
    mid = patch_map(record['mid'])
    weights = [torch.randn(t.shape, generator=gen) for t in (logits, last)]
    loss = sum((t * wt.double()).sum()
               for t, wt in zip((logits, last), weights))
    # .backward(), not autograd.grad: the authors checkpoint every block
    # with the reentrant implementation, which supports only .backward()
    loss.backward()
    params = dict(model.named_parameters())
    golden = dict(
        arch=ARCH,
        mid_block=MID_BLOCK,
        state_dict=state,
        input=x.detach().float(),
        logits=logits.detach(),
        last_tokens=last.detach(),
        mid_attended=mid.detach(),
        loss_weights=weights,
        grad_input=x.grad,
        grad_params={k: p.grad for k, p in params.items()})
    torch.save(golden, args.out)
    print(f'wrote {args.out}: logits {tuple(logits.shape)}, last tokens '
          f'{tuple(last.shape)}, {sum(v.numel() for v in state.values())} '
          'parameters')


if __name__ == '__main__':
    main()
