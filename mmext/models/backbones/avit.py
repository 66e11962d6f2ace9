"""A-ViT: a DeiT whose tokens stop being computed at different depths.

"A-ViT: Adaptive Tokens for Efficient Vision Transformer" (Yin et al.,
CVPR 2022), official code github.com/NVlabs/A-ViT. After every block each
token gets a halting score ``h = sigmoid(gate_scale * y[..., 0] -
gate_center)`` from channel 0 of the block output ``y`` (no parameters, so
checkpoints are plain DeiT ones). Scores accumulate; a token halts once the
sum passes ``1 - eps`` (the last block forces ``h = 1``). Its output is the
mean-field sum over the blocks it ran of ``h * y``, with the remainder
``R = 1 - sum(h)`` weighting its halting block.

Two forms of the same computation:

* masked (training, and ``token_removal=False``): the official one. Every
  token runs every block; halted ones are zeroed (with a straight-through
  gradient, as the official ``.data`` write), masked in and out of the norms
  and given a -1000 key bias. Records what the halting losses need.
* removal (inference): halted tokens leave the computation; only the
  running ones of each image go through a block. Same outputs up to
  rounding: a -1000 bias is an exact zero after softmax.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmext.models.layers import (PreNormBlock, SelfAttention, attend,
                                 build_norm, maybe_checkpoint, split_heads)
from mmext.registry import MODELS
from mmext.utils.precision import compute_dtype, upcast
from .plain_vit import PlainViTBackbone

__all__ = ['AViT', 'HaltingBlock', 'halting_prior']

#: the official bias on halted keys; exp(-1000) is an exact 0 in fp32/fp64
HALTED_KEY_BIAS = -1000.
REMOVAL_MODES = ('padded', 'packed')
HALTING_LOSS_DEFAULTS = dict(ponder_weight=5e-4,
                             prior_weight=1e-3,
                             prior_target_depth=None,
                             prior_std=1.,
                             prior_buffer=0.02,
                             prior_skip_first_image=False)


def halting_prior(depth: int,
                  target_depth: int,
                  std: float = 1.,
                  buffer: float = 0.02) -> Tensor:
    """The official distribution prior over the blocks (float64): a
    Gaussian density at ``0 .. depth-1`` centred on ``target_depth``,
    scaled so the blocks before ``target_depth`` sum to ``1 - buffer``.
    It is not a distribution (for 12 blocks / 8 it sums to ~3.3); kept as
    it is because the released loss weights were tuned with it."""
    if not 0 < target_depth < depth:
        raise ValueError(f'prior_target_depth must be in 1..{depth - 1}, '
                         f'got {target_depth}')
    blocks = torch.arange(depth, dtype=torch.float64)
    density = torch.exp(-0.5 * (
        (blocks - target_depth) / std)**2) / (std * math.sqrt(2 * math.pi))
    return density * ((1 - buffer) / density[:target_depth].sum())


class HaltingBlock(PreNormBlock):
    """The DeiT block of :class:`~mmext.models.layers.PreNormBlock` (plain
    self-attention, 4x GELU FFN) in the three forms A-ViT runs.

    * ``forward(x, attn_mask=m)``: the plain block; ``m`` (boolean, True for
      keys that take part) masks the padding of a padded batch.
    * ``forward(x, keep=k)``, ``k`` ``(B, N, 1)`` with 1 for running and 0
      for halted tokens: the official masked form, halted tokens zeroed
      around each norm and their keys biased by -1000.
    * :meth:`forward_packed`: the running tokens of several images packed
      in one sequence.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6)):
        super().__init__(embed_dims, SelfAttention(embed_dims, num_heads),
                         dict(mlp_ratio=4), drop_path_rate, norm_cfg)

    def forward(self,
                x: Tensor,
                keep: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        if keep is None:
            x = x + self.drop_path(
                self.attn(self.norm1(x), attn_mask=attn_mask))
            return self.ffn(self.norm2(x), identity=x)
        key_bias = (1 - keep).transpose(1, 2).unsqueeze(1) * HALTED_KEY_BIAS
        x = x + self.drop_path(
            self.attn(self.norm1(x * keep) * keep, attn_mask=key_bias))
        return self.ffn(self.norm2(x * keep) * keep, identity=x)

    def forward_packed(self, x: Tensor, sizes: Sequence[int]) -> Tensor:
        """The plain block on the tokens of several images packed as
        ``(T, C)`` (``sizes`` tokens each): the token-wise layers run once on
        all of them, attention within each image."""
        qkv = self.attn.qkv(self.norm1(x))
        heads = self.attn.num_heads
        mixed = torch.cat([
            attend(*split_heads(part[None], 3, heads))[0]
            for part in qkv.split(list(sizes)) if len(part)
        ])
        x = x + self.drop_path(self.attn.proj(mixed))
        return self.ffn(self.norm2(x), identity=x)


@MODELS.register_module()
class AViT(PlainViTBackbone):
    """A-ViT backbone: DeiT with adaptive token halting.

    Args:
        arch (str | dict): 'tiny'/'t' (192 dims, 3 heads) or 'small'/'s'
            (384, 6), both 12 blocks of patch 16; or a dict with keys
            ``embed_dims, depth, num_heads, patch_size``.
        img_size (int | tuple): input size the position embedding was
            trained at (it is resized bicubically to every input's grid).
            Default 224.
        out_indices (int | Sequence[int]): blocks whose output to return
            (every block is a "stage"). The output of block ``i`` is what
            the model would return if all tokens halted there: the
            mean-field sum so far plus the remainder times the current
            state of running tokens; at the last block it is the official
            output. All go through the final ``norm``. Default -1.
        out_type (str): 'featmap' (patch tokens as a stride-``patch_size``
            NCHW map, for dense prediction) or 'cls_token' (``(B, C)``
            class token, for mmpretrain's ``VisionTransformerClsHead``).
        with_cls_token (bool): prepend the class token. It takes part in
            attention and halting, so the released weights expect it.
            Default True.
        gate_scale, gate_center (float): the halting gate. Not stored in
            checkpoints; the released models use 10/30 (tiny), 10/75
            (small). Default 10/30.
        halting_eps (float): a token halts once its scores sum above
            ``1 - halting_eps``. Default 0.01 (official).
        token_removal (bool): in eval mode, drop halted tokens from the
            computation (else run the masked form). Default True.
        removal_mode (str): how a batch whose images keep different numbers
            of tokens runs a block: 'padded' (each image's running tokens
            padded to the longest, padded keys masked) or 'packed' (norms,
            projections and FFN on all running tokens at once, attention
            image by image). Default 'packed' (faster in
            ``benchmarks/avit/``).
        halting_loss (dict): weights and prior of :meth:`losses` (keys of
            ``HALTING_LOSS_DEFAULTS``): ``ponder_weight`` (5e-4) times the
            mean ponder cost; ``prior_weight`` (1e-3) times the KL between
            the per-block mean halting score and :func:`halting_prior`
            (``prior_target_depth`` defaults to 2/3 of the depth, 8 of
            12). ``prior_skip_first_image``: average the scores over the
            images after the first, as the official code does (it slices
            the batch where the class token was meant); off by default.
        drop_path_rate (float): stochastic depth, linear over the blocks.
        frozen_stages (int): -1 none, 0 the stem (patch embedding, class
            token, position embedding), ``i`` also blocks ``0..i-1``.
        norm_eval, with_cp, init_cfg: as every mmext backbone.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'],
                        dict(embed_dims=192,
                             depth=12,
                             num_heads=3,
                             patch_size=16)),
        **dict.fromkeys(['s', 'small'],
                        dict(embed_dims=384,
                             depth=12,
                             num_heads=6,
                             patch_size=16)),
    }
    layer_depth_rules = (
        (r'(patch_embed\.|cls_token$|pos_embed$)', 'stem'),
        (r'blocks\.(?P<stage>\d+)\.', 'block'),
        (r'norm\.', 'last_block'),  # the final norm serves every output
    )

    def __init__(self,
                 arch='tiny',
                 img_size=224,
                 out_indices=-1,
                 out_type: str = 'featmap',
                 with_cls_token: bool = True,
                 gate_scale: float = 10.,
                 gate_center: float = 30.,
                 halting_eps: float = 0.01,
                 token_removal: bool = True,
                 removal_mode: str = 'packed',
                 halting_loss: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(arch,
                         out_indices,
                         frozen_stages=frozen_stages,
                         norm_eval=norm_eval,
                         with_cp=with_cp,
                         init_cfg=init_cfg)
        self.out_type = self.check_out_type(out_type)
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        if removal_mode not in REMOVAL_MODES:
            raise ValueError(f'removal_mode must be one of {REMOVAL_MODES}, '
                             f'got {removal_mode!r}')
        if not 0 < halting_eps < 1:
            raise ValueError(f'halting_eps must be in (0, 1), got '
                             f'{halting_eps}')
        unknown = set(halting_loss or {}) - set(HALTING_LOSS_DEFAULTS)
        if unknown:
            raise ValueError(f'halting_loss: unknown keys {sorted(unknown)}; '
                             f'valid: {sorted(HALTING_LOSS_DEFAULTS)}')
        settings = self.arch_settings
        dims, depth = settings['embed_dims'], settings['depth']
        self.halting_loss = {**HALTING_LOSS_DEFAULTS, **(halting_loss or {})}
        if self.halting_loss['prior_target_depth'] is None:
            self.halting_loss['prior_target_depth'] = round(depth * 2 / 3)
        # fail at build time, not at the first loss
        halting_prior(depth, self.halting_loss['prior_target_depth'])
        self.with_cls_token = with_cls_token
        self.gate_scale = float(gate_scale)
        self.gate_center = float(gate_center)
        self.halting_eps = float(halting_eps)
        self.token_removal = token_removal
        self.removal_mode = removal_mode

        self.build_embeddings(3, img_size)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            HaltingBlock(dims, settings['num_heads'], drop_path_rate=r)
            for r in rates)
        self.norm = build_norm(dict(type='LN', eps=1e-6), dims)
        #: what the last forward recorded (depths; in the masked form also
        #: the ponder cost and per-block scores the losses need)
        self.halting_state: Optional[Dict] = None
        self.freeze_stages()

    # -- forward -----------------------------------------------------------
    def halting_score(self, y: Tensor) -> Tensor:
        # float32 under mixed precision: the scores are summed and compared
        # with 1 - eps (0.99 is 0.98828125 in bfloat16)
        return torch.sigmoid(
            upcast(y[..., 0]) * self.gate_scale - self.gate_center)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        tokens, hw = self.embed(x, self.with_cls_token)
        if self.training or not self.token_removal:
            outs, state = self.forward_masked(tokens)
        else:
            outs, state = self.forward_removal(tokens)
        state['grid'] = hw
        self.halting_state = state
        return tuple(self._format(i, out, hw) for i, out in outs)

    def forward_masked(self, x: Tensor):
        """The official masked form on ``(B, N, C)`` tokens: returns the
        ``(out index, mean-field tokens)`` pairs and the halting state."""
        b, n, _ = x.shape
        last = len(self.blocks) - 1
        threshold = 1 - self.halting_eps
        # halting state and the mean-field sum in float32 at least
        acc = dict(dtype=compute_dtype(x), device=x.device)
        keep = torch.ones(b, n, **acc)  # 1: still running
        cum = torch.zeros(b, n, **acc)
        remainder = torch.ones(b, n, **acc)
        rho = torch.zeros(b, n, **acc)
        depth = torch.ones(b, n, **acc)
        out = torch.zeros(x.shape, **acc)
        scores, outs = [], []
        for i, block in enumerate(self.blocks):
            # halted tokens enter as zeros; the gradient passes as if they
            # did not (the official code zeroes them through ``.data``)
            x = x - (x * (1 - keep)[..., None]).detach()
            y = maybe_checkpoint(block,
                                 x,
                                 keep[..., None],
                                 enabled=self.with_cp)
            h = self.halting_score(y)
            scores.append(h)
            if i == last:
                h = torch.ones_like(h)
            cum = cum + h
            rho = rho + keep
            reached = (cum > threshold).to(cum.dtype) * keep
            running = (cum < threshold).to(cum.dtype)
            # exactly one of the two weights is non-zero for a running token
            out = out + y * keep[..., None] * (remainder * reached +
                                               h * running)[..., None]
            rho = rho + remainder * reached
            remainder = remainder - running * h
            depth = depth + running
            keep = running
            x = y
            if i in self.out_indices:
                outs.append((i, out if i == last else out +
                             (remainder * keep)[..., None] * y))
        return outs, dict(depth=depth.detach(), rho=rho, scores=scores)

    def forward_removal(self, x: Tensor):
        """Inference with halted tokens removed; same results as
        :meth:`forward_masked` (up to rounding)."""
        b, n, c = x.shape
        last = len(self.blocks) - 1
        threshold = 1 - self.halting_eps
        idx = torch.arange(b * n, device=x.device)  # running, image-major
        x = x.reshape(b * n, c)
        acc = dict(dtype=compute_dtype(x), device=x.device)
        cum = torch.zeros(b * n, **acc)
        remainder = torch.ones(b * n, **acc)
        depth = torch.zeros(b * n, **acc)
        out = torch.zeros(b * n, c, **acc)
        outs = []
        for i, block in enumerate(self.blocks):
            if idx.numel():
                depth[idx] = i + 1
                y = self._run_block(block, x, idx // n, b)
                h = torch.ones_like(cum) if i == last else \
                    self.halting_score(y)
                cum = cum + h
                reached = cum > threshold
                running = cum < threshold
                weight = torch.where(reached, remainder,
                                     torch.where(running, h, 0.))
                out.index_add_(0, idx, y * weight[:, None])
                remainder = remainder - h * running
                idx, x, cum, remainder = (t[running]
                                          for t in (idx, y, cum, remainder))
            if i in self.out_indices:
                now = out if i == last or not idx.numel() else \
                    out.index_add(0, idx, x * remainder[:, None])
                outs.append((i, now.view(b, n, c)))
        return outs, dict(depth=depth.view(b, n))

    def _run_block(self, block: nn.Module, x: Tensor, image: Tensor,
                   batch: int) -> Tensor:
        """One block on the packed running tokens ``x`` ``(T, C)`` of the
        images ``image`` ``(T,)`` (sorted), attention within each image."""
        counts = torch.bincount(image, minlength=batch)
        longest = int(counts.max())
        if bool((counts == longest).all()):  # batch 1, or equal counts
            return block(x.view(batch, longest, -1)).view(x.shape)
        if self.removal_mode == 'packed':
            return block.forward_packed(x, counts.tolist())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(x), device=x.device) - starts[image]
        padded = x.new_zeros(batch, longest, x.shape[1])
        padded[image, rank] = x
        valid = torch.arange(longest, device=x.device) < counts[:, None]
        return block(padded, attn_mask=valid[:, None, None, :])[image, rank]

    def _format(self, index: int, tokens: Tensor, hw: Tuple[int, int]):
        extra = self.num_extra_tokens if self.with_cls_token else 0
        if self.out_type == 'cls_token':
            return self.norm(tokens[:, 0])
        return self.to_output(index, self.norm(tokens[:, extra:]), hw)

    # -- halting statistics and losses -------------------------------------
    def depth_map(self) -> Tensor:
        """Blocks run by each patch token in the last forward, ``(B, H,
        W)`` on the patch grid."""
        if self.halting_state is None:
            raise RuntimeError('AViT.depth_map(): run a forward first')
        depth, hw = self.halting_state['depth'], self.halting_state['grid']
        extra = self.num_extra_tokens if self.with_cls_token else 0
        return depth[:, extra:].reshape(depth.shape[0], *hw)

    def losses(self) -> Dict[str, Tensor]:
        """Ponder and distribution-prior losses of the last (training)
        forward, plus the mean token depth for the log."""
        state = self.halting_state
        if state is None or 'rho' not in state:
            raise RuntimeError(
                'AViT.losses() needs a forward in training mode (or with '
                'token_removal=False): the masked form records the ponder '
                'cost and the halting scores')
        cfg = self.halting_loss
        loss_ponder = cfg['ponder_weight'] * state['rho'].mean()
        scores = torch.stack(state['scores'])  # (depth, B, N)
        if cfg['prior_skip_first_image']:
            scores = scores[:, 1:]
        if scores.shape[1]:
            per_block = scores.flatten(1).mean(1)
            per_block = (per_block / per_block.sum()).clamp(0.01, 0.99)
            target = halting_prior(len(self.blocks), cfg['prior_target_depth'],
                                   cfg['prior_std'],
                                   cfg['prior_buffer']).to(per_block)
            # 'batchmean' on one distribution divides by the block count
            kl = F.kl_div(per_block.log(), target, reduction='batchmean')
            # the official loop adds the prior only when it is positive
            loss_prior = (cfg['prior_weight'] * kl).clamp(min=0)
        else:  # one image with prior_skip_first_image: officially skipped
            loss_prior = scores.new_zeros(())
        return dict(loss_ponder=loss_ponder,
                    loss_halting_prior=loss_prior,
                    mean_depth=state['depth'].mean())
