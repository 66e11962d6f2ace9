#!/usr/bin/env python
"""Regenerate ``shuffle_swin_golden.pth`` from the AUTHORS' Shuffle Swin code.

    PYTHONPATH=/path/to/timm-0.4.12 python \
        tests/data/make_shuffle_swin_golden.py /path/to/Swin-Transformer \
        OUT.pth

``/path/to/Swin-Transformer`` is a checkout of the ``release`` branch of
github.com/Ackesnal/Swin-Transformer (``models/swin_transformer.py``); its
``SwinTransformer(shuffle=True)`` runs unchanged, built with a tiny arch and
the input size of each case through its constructor arguments. Needs timm
(0.4.12 was used) and no mmext.

The model runs in float64 (inputs and loss weights are float32 numbers,
stored as such to halve the file). All parameters are random (not the
authors' init, so no block is near an identity). Stored per case: the
input, the classifier logits, the four stage outputs (the tokens each
stage passes to its downsampling, as ``(B, C, H, W)``; the last one after
the final norm), the weights ``w`` of the scalar ``sum(w_logits * logits)
+ sum_i sum(w_i * feature_i)`` and, for the cases marked so, its float64
gradients w.r.t. the input and every parameter (the authors' names).
"""
import argparse
import os.path as osp
import sys

import torch

#: the authors' constructor arguments (a tiny arch; window 3 keeps maps small)
ARCH = dict(
    patch_size=2,
    embed_dim=8,
    depths=[2, 2, 2, 2],
    num_heads=[1, 1, 2, 2],
    window_size=3,
    mlp_ratio=4.,
    num_classes=10,
    drop_path_rate=0.,
    shuffle=True)
#: (B, H, W, with gradients): 48x96 has a 3x6 last stage (as high as the
#: window: the authors disable the shift there), 96x96 shifts in every stage
CASES = [(2, 48, 96, False), (1, 96, 96, True)]
SEED = 0


def randomize_(model, gen):
    """Random values for every parameter, scaled so activations stay O(1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and 'relative_position' not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen,
                                    dtype=p.dtype) * fan_in**-0.5)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen,
                                              dtype=p.dtype))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen,
                                          dtype=p.dtype))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('repo', help='checkout of Ackesnal/Swin-Transformer '
                        '(branch release)')
    parser.add_argument('out')
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.repo))
    from models.swin_transformer import SwinTransformer

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    ref = SwinTransformer(img_size=(CASES[0][1], CASES[0][2]), **ARCH)
    ref = ref.double()
    randomize_(ref, gen)
    state = {k: v.clone() for k, v in ref.state_dict().items()
             if not k.endswith('attn_mask')}

    cases = []
    for b, h, w, with_grad in CASES:
        model = SwinTransformer(img_size=(h, w), **ARCH).double().eval()
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith('attn_mask')
                                      for k in missing), (missing, unexpected)
        feats = {}

        def keep(i):
            def hook(module, inputs, output):
                feats[i] = output
            return hook

        handles = [layer.blocks[-1].register_forward_hook(keep(i))
                   for i, layer in enumerate(model.layers)]
        handles.append(model.norm.register_forward_hook(keep('final')))
        # inputs and loss weights are float32 numbers (half the file size)
        x = torch.randn(b, 3, h, w, generator=gen).double()
        x.requires_grad_(with_grad)
        logits = model(x)[0]
        for handle in handles:
            handle.remove()
        feats[len(model.layers) - 1] = feats.pop('final')
        maps = []
        for i in range(len(model.layers)):
            stride = ARCH['patch_size'] * 2**i
            hw = (h // stride, w // stride)
            tokens = feats[i]
            maps.append(tokens.transpose(1, 2).reshape(b, -1, *hw))
        case = dict(
            input=x.detach().float(),
            logits=logits.detach(),
            features=[m.detach() for m in maps])
        if with_grad:
            weights = [torch.randn(t.shape, generator=gen)
                       for t in [logits] + maps]
            loss = sum((t * wt.double()).sum()
                       for t, wt in zip([logits] + maps, weights))
            params = dict(model.named_parameters())
            grads = torch.autograd.grad(loss, [x] + list(params.values()))
            case.update(
                loss_weights=weights,
                grad_input=grads[0],
                grad_params=dict(zip(params, grads[1:])))
        cases.append(case)
        print(f'case {b}x3x{h}x{w}: logits {tuple(logits.shape)}, features '
              f'{[tuple(m.shape) for m in maps]}')
    torch.save(dict(arch=ARCH, state_dict=state, cases=cases), args.out)
    print(f'wrote {args.out} ({sum(v.numel() for v in state.values())} '
          'parameters)')


if __name__ == '__main__':
    main()
