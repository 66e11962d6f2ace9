#!/usr/bin/env python
"""How often a channel-shuffle block copies its idle half, measured.

Every aten op of one block's forward is logged with a
``TorchDispatchMode``. A *copy* is an op that only moves data (cat, stack,
clone, copy_, padding, ...). Copies whose input holds idle-half data are
counted: at the start that is the idle channels of the block input; the
output of such a copy holds idle data in turn (so a concatenation followed
by a transposing reshape counts twice). The bytes written by every copy of
the block are also summed.

Compared: ``mmext.ShuffleSwin``'s block and the same block finished the way
the authors' code does it (``cat`` then a transposing reshape). Usage::

    python benchmarks/shuffle/idle_copies.py [--hw 56 56] [--out FILE.json]
"""
import argparse
import json

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmext.models.backbones.shuffle_swin import ShuffleSwinBlock

aten = torch.ops.aten
COPY_OPS = {
    aten.cat.default, aten.stack.default, aten.clone.default,
    aten.copy_.default, aten._to_copy.default, aten.constant_pad_nd.default,
    aten.roll.default, aten.index.Tensor, aten.slice_scatter.default,
    aten.select_scatter.default
}


class CopyCounter(TorchDispatchMode):
    """Counts copies of the idle half of ``x`` (see the module docstring)."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        c = x.shape[-1]
        self.idle_storage = x.untyped_storage().data_ptr()
        self.idle_channels = (c // 2, c)
        self.channels = c
        self.tainted = set()  # storages of copies holding idle data
        self.idle_copies = []
        self.copy_bytes = 0
        self.bytes_by_op = {}

    def _holds_idle(self, t) -> bool:
        if not isinstance(t, torch.Tensor):
            return False
        ptr = t.untyped_storage().data_ptr()
        if ptr in self.tainted:
            return True
        if ptr != self.idle_storage or t.numel() == 0:
            return False
        # a view of the block input: which channels does it cover?
        if t.stride(-1) != 1:
            return True  # not a channel slice: assume the worst
        first = t.storage_offset() % self.channels
        last = first + t.shape[-1]
        lo, hi = self.idle_channels
        return first < hi and last > lo

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in COPY_OPS:
            flat = list(args) + list(kwargs.values())
            inputs = [a for x in flat for a in (x if isinstance(
                x, (list, tuple)) else [x])]
            outs = out if isinstance(out, (list, tuple)) else [out]
            written = sum(o.numel() * o.element_size() for o in outs
                          if isinstance(o, torch.Tensor))
            self.copy_bytes += written
            name = str(func)
            self.bytes_by_op[name] = self.bytes_by_op.get(name, 0) + written
            if any(self._holds_idle(t) for t in inputs):
                self.idle_copies.append(str(func))
                for o in outs:
                    if isinstance(o, torch.Tensor):
                        self.tainted.add(o.untyped_storage().data_ptr())
        return out


class AuthorsFormBlock(ShuffleSwinBlock):
    """The same block, its halves joined as in the authors' code:
    ``cat((x, idle)).reshape(B, L, 2, C/2).transpose(-1, -2).reshape``."""

    def forward_authors(self, x, hw_shape):
        b, length, c = x.shape
        attended, idle = x[..., :c // 2], x[..., c // 2:]
        a, bb = self._scales()
        y = self._scaled(attended, a) + self.drop_path(
            self.attn(self.norm1(attended), hw_shape))
        y = self.ffn(self.norm2(y), identity=self._scaled(y, bb))
        return torch.cat((y, idle), dim=2).reshape(b, length, 2, c // 2) \
            .transpose(-1, -2).reshape(b, length, c)


def measure(block, x, hw, authors_form: bool):
    run = block.forward_authors if authors_form else block
    x = x.clone().requires_grad_(True)
    with CopyCounter(x) as fwd:
        out = run(x, hw)
    return dict(
        forward_idle_copies=len(fwd.idle_copies),
        forward_idle_copy_ops=fwd.idle_copies,
        forward_copy_bytes=fwd.copy_bytes,
        forward_copy_bytes_by_op=fwd.bytes_by_op,
        idle_half_bytes=x.numel() // 2 * x.element_size(),
        output=out.detach())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hw', type=int, nargs=2, default=(56, 56),
                        help='map size (56 56: stage 0 at 224 pixels; '
                        '200 336: stage 0 at 800x1344)')
    parser.add_argument('--channels', type=int, default=96)
    parser.add_argument('--heads', type=int, default=3)
    parser.add_argument('--out')
    args = parser.parse_args()
    torch.manual_seed(0)
    h, w = args.hw
    block = AuthorsFormBlock(args.channels, args.heads, shift=True).eval()
    x = torch.randn(1, h * w, args.channels)
    results = {}
    for name, authors in (('mmext', False), ('authors_form', True)):
        r = measure(block, x, (h, w), authors)
        results[name] = r
    torch.testing.assert_close(results['mmext']['output'],
                               results['authors_form']['output'])
    report = {}
    for name, r in results.items():
        report[name] = {k: v for k, v in r.items()
                        if k != 'output'}
        print(f"{name:13s} idle half copied {r['forward_idle_copies']}x "
              f"per block forward ({', '.join(r['forward_idle_copy_ops'])});"
              f" all copies: {r['forward_copy_bytes'] / 2**20:.2f} MiB "
              f"(idle half: {r['idle_half_bytes'] / 2**20:.2f} MiB)")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(hw=[h, w], channels=args.channels, **report), f,
                      indent=1)


if __name__ == '__main__':
    main()
