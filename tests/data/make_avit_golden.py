#!/usr/bin/env python
"""Regenerate ``avit_golden.pth`` by running the OFFICIAL A-ViT code.

    python tests/data/make_avit_golden.py /path/to/A-ViT OUT.pth

``/path/to/A-ViT`` is a checkout of github.com/NVlabs/A-ViT (it vendors the
timm 0.4.12 that holds ``act_vision_transformer.py``; needs scipy and
opencv, which the mmext venv has). Nothing of it is copied here: the model,
the distribution prior and one step of the official training loop
(``engine_act.train_one_epoch``, which adds the ponder and prior losses) run
as they are, on CPU in float64. The harness only

* makes ``.cuda()`` a no-op and ``torch.cuda.synchronize`` a no-op (the
  official code calls them unconditionally);
* builds the prior for this depth (the official call uses its defaults,
  12 layers with target depth 8) by calling the official
  ``get_distribution_target`` with ``length=DEPTH, target_depth=TARGET`` and
  keeps its float64 result (the official code stores it in float32);
* feeds one batch, uses ``sum(logit_weights * logits)`` as the task loss and
  records the gradient of the total loss (task + ponder + prior) instead of
  taking an optimizer step.

Halting depends on the weights: channel 0 of the patch embedding is scaled so
that the tokens of the two images halt at different depths (1 to DEPTH).
"""
import argparse
import os.path as osp
import sys
from argparse import Namespace
from functools import partial

import torch
import torch.nn as nn

EMBED, DEPTH, HEADS, PATCH = 48, 4, 3, 16
IMG = (48, 80)  # a 3x5 grid: 15 patch tokens + the class token
NUM_CLASSES = 10
GATE_SCALE, GATE_CENTER = 4.0, 2.0
CLS_GATE = 1.0  # the class token halts at block 2, before the last
TARGET_DEPTH = 3  # of the prior, for DEPTH layers
# larger than the released 5e-4 / 1e-3 so that both terms weigh in the
# gradients (a wrong reduction would otherwise hide below 1e-3 of them)
PONDER_SCALE, PRIOR_ALPHA = 0.05, 0.5


def random_state(model, gen):
    """Weights of DeiT's layout, larger than the DeiT init so tokens differ."""
    state = {}
    for name, p in model.state_dict().items():
        shape = p.shape
        if name.endswith('.weight') and p.ndim == 1:  # LayerNorm
            t = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith('.bias'):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif name in ('cls_token', 'pos_embed'):
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            fan_in = p[0].numel()
            t = torch.randn(shape, generator=gen) / fan_in**0.5
        state[name] = t
    # spread channel 0 (the halting channel) over the tokens
    state['patch_embed.proj.weight'][0] *= 3.
    state['cls_token'][..., 0] = CLS_GATE
    # values exactly representable in float32: the file stores float32
    return {k: v.float() for k, v in state.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('avit_src', help='checkout of NVlabs/A-ViT')
    parser.add_argument('out', help='output .pth')
    args = parser.parse_args()
    src = osp.abspath(args.avit_src)
    if not osp.isfile(osp.join(src, 'timm/models/act_vision_transformer.py')):
        sys.exit(f'{src} is not an A-ViT checkout')
    sys.path.insert(0, src)

    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.synchronize = lambda *a, **k: None

    import engine_act
    import timm.models.act_vision_transformer as avt
    import utils as avit_utils

    prior = partial(avit_utils.get_distribution_target, length=DEPTH,
                    target_depth=TARGET_DEPTH)
    avt.get_distribution_target = prior

    opts = Namespace(act_mode=4, gate_scale=GATE_SCALE,
                     gate_center=GATE_CENTER, distr_prior_alpha=PRIOR_ALPHA,
                     ponder_token_scale=PONDER_SCALE)
    torch.manual_seed(0)
    model = avt.VisionTransformer(
        img_size=IMG, patch_size=PATCH, num_classes=NUM_CLASSES,
        embed_dim=EMBED, depth=DEPTH, num_heads=HEADS, mlp_ratio=4,
        qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        args=opts)
    gen = torch.Generator().manual_seed(1)
    state = random_state(model, gen)
    model.load_state_dict(state)
    model.double()
    model.distr_target = torch.from_numpy(prior(standardized=True))

    images = torch.randn(2, 3, *IMG, generator=gen, dtype=torch.float64)
    images[1] *= 0.5  # the second image halts differently
    images.requires_grad_(True)
    logit_weights = torch.randn(2, NUM_CLASSES, generator=gen,
                                dtype=torch.float64)

    captured = {}
    model.norm.register_forward_hook(
        lambda m, i, o: captured.__setitem__('features', o.detach()))

    def task_loss(samples, outputs, targets):
        captured['logits'] = outputs.detach()
        return (outputs * logit_weights).sum()

    def backward(loss, optimizer, **kwargs):
        captured['loss'] = loss.detach()
        loss.backward()

    wrapped = nn.DataParallel(model)  # gives ``.module`` like the DDP run
    optim = torch.optim.SGD(model.parameters(), lr=0.)
    stats = engine_act.train_one_epoch(
        wrapped, task_loss, [(images, torch.zeros(2, dtype=torch.long))],
        optim, torch.device('cpu'), 0, backward, args=opts)

    depths = model.counter_token.detach()
    print('per-token depths:\n', depths)
    assert len(set(depths.flatten().tolist())) == DEPTH, \
        'tokens should halt at every depth: change the weights or gates'
    golden = dict(
        arch=dict(embed_dims=EMBED, depth=DEPTH, num_heads=HEADS,
                  patch_size=PATCH),
        img_size=IMG, num_classes=NUM_CLASSES, gate_scale=GATE_SCALE,
        gate_center=GATE_CENTER, halting_eps=model.eps,
        ponder_token_scale=PONDER_SCALE, distr_prior_alpha=PRIOR_ALPHA,
        prior_target_depth=TARGET_DEPTH,
        prior_target=model.distr_target.clone(),
        state_dict=state,
        images=images.detach(), logit_weights=logit_weights,
        logits=captured['logits'], features=captured['features'],
        depths=depths, rho=model.rho_token.detach(),
        layer_halting=torch.stack(model.halting_score_layer).detach(),
        loss_ponder=torch.tensor(stats['ponder_loss_token'],
                                 dtype=torch.float64),
        loss_prior=torch.tensor(stats['distri_prior_loss'],
                                dtype=torch.float64),
        loss_total=captured['loss'],
        grad_images=images.grad.detach(),
        grads={k: p.grad.detach() for k, p in model.named_parameters()})
    print({k: golden[k] for k in ('loss_ponder', 'loss_prior',
                                  'loss_total')})
    torch.save(golden, args.out)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
