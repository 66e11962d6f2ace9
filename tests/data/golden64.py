"""Helpers of the float64 forward/gradient goldens.

Used by the generators (``make_dualvit_golden.py``,
``make_elsa_swin_golden.py``, run with the official code) and by
``tests/models/backbones/test_goldens.py``, so that both sides build the
same inputs and the same scalar loss. mmext is imported only by
:func:`load_golden`, which the tests call.
"""
import math
import os.path as osp
import sys

import torch


def smooth_input(b, h, w, phase=0.):
    """Deterministic test image: a few sinusoids per channel."""
    yy = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    c = torch.arange(3, dtype=torch.float64).view(1, 3, 1, 1)
    bb = torch.arange(b, dtype=torch.float64).view(b, 1, 1, 1)
    img = (torch.sin(0.37 * yy + 0.11 * xx * (c + 1) + bb + phase) +
           torch.cos(0.05 * xx * yy / (c + 2) - 0.3 * bb) +
           0.5 * torch.sin(1.7 * xx - 0.9 * yy + c))
    return img.float()


def max_rel_error(actual, expected):
    """``max |a - e| / max |e|``: elementwise relative errors are meaningless
    near zero, so errors are measured against the tensor's scale."""
    return ((actual - expected).abs().max() /
            expected.abs().max().clamp_min(1e-12)).item()


def output_weights(outputs):
    """A fixed weight tensor per output (a cosine over the flattened
    elements, different per output, no RNG), normalised by ``sqrt(numel)``
    so that every output contributes to the gradient alike."""
    weights = []
    for i, out in enumerate(outputs):
        idx = torch.arange(out.numel(), dtype=torch.float64)
        w = torch.cos(0.37 * idx + 1.3 * i) / math.sqrt(out.numel())
        weights.append(w.view(out.shape).to(out.dtype))
    return weights


def weighted_sum(outputs):
    """The loss whose gradients the goldens store."""
    return sum((w * o).sum() for w, o in zip(output_weights(outputs), outputs))


@torch.no_grad()
def randomize_(model, seed):
    """Informative random values for every float tensor, exactly
    representable in fp16 (the goldens store the weights as fp16).

    Layer scales and ghost matrices, initialised tiny by the reference code,
    get values that make their blocks matter; BatchNorm statistics are
    plausible (variance near 1)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict(keep_vars=True).items()):
        if not t.dtype.is_floating_point:
            continue
        leaf = name.rsplit('.', 1)[-1]
        r = torch.randn(t.shape, generator=g)
        if leaf == 'running_var':
            value = torch.rand(t.shape, generator=g) + 0.5
        elif leaf.startswith('gamma'):
            value = torch.rand(t.shape, generator=g) * 0.5 + 0.25
        elif 'ghost' in leaf:
            value = 0.1 * r
        elif leaf == 'rb':  # relative position bias table
            value = 0.5 * r
        elif t.ndim == 1 and leaf == 'weight':
            value = 1 + 0.2 * r
        elif t.ndim == 1:
            value = 0.1 * r
        else:
            value = r / math.sqrt(t[0].numel())
        t.copy_(value.half().to(t.dtype))


def stand_in(name, **attrs):
    """Register an empty module ``name`` (with ``attrs``) in
    ``sys.modules``: import plumbing for reference code whose framework
    imports (mmcv 1.x, mmdet 2.x) do not exist here."""
    import types
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # importable as a package too
    sys.modules[name] = module
    return module


def exec_file(path, name, package, replace=()):
    """Run the source file ``path`` as module ``name`` of ``package`` (for
    its relative imports) and return the module: the reference code runs
    from where it lies, nothing is copied. ``replace``: ``(old, new)``
    pairs of source text (each must occur once) to change a constant."""
    import types
    with open(path) as f:
        source = f.read()
    for old, new in replace:
        assert source.count(old) == 1, f'{old!r} not found once in {path}'
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__file__ = path
    module.__package__ = package
    sys.modules[name] = module
    exec(compile(source, path, 'exec'), module.__dict__)
    return module


class Registry:
    """Stand-in for an mmdet 2.x registry: ``register_module`` returns the
    class unchanged."""

    def register_module(self, *args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda cls: cls)


def pack(tensors):
    """A dict of same-dtype tensors as one flat tensor plus names and shapes
    (a zip entry per tensor would add more bytes than a small tensor has)."""
    return dict(names=list(tensors),
                shapes=[list(t.shape) for t in tensors.values()],
                flat=torch.cat([t.reshape(-1) for t in tensors.values()]))


def unpack(packed):
    sizes = [math.prod(s) for s in packed['shapes']]
    parts = packed['flat'].split(sizes)
    return {
        n: p.view(s)
        for n, p, s in zip(packed['names'], parts, packed['shapes'])
    }


def param_grads(model):
    """Every parameter's gradient, by name (each must have one)."""
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if not g.abs().sum()]
    assert not missing, f'parameters without gradient: {missing}'
    return grads


def save(golden, out, source):
    """Write a golden file (noting where it came from) and report its
    size."""
    script = osp.basename(sys.argv[0])
    golden['note'] = f'made by tests/data/{script} from {source}'
    torch.save(golden, out)
    print(f'wrote {out} ({osp.getsize(out) / 1024:.0f} KiB)')


def cli(main, doc):
    """``python make_*.py OFFICIAL_DIR OUT``."""
    if len(sys.argv) != 3:
        sys.exit(doc)
    main(*sys.argv[1:3])


def load_golden(filename, family, grads):
    """The golden with the official weights (``official``) and gradients
    converted to our layout (``state``, ``grads``)."""
    g = torch.load(osp.join(osp.dirname(osp.abspath(__file__)), filename),
                   weights_only=True)
    g['official'] = {
        k: v.double()
        for k, v in unpack(g['official_state_dict_fp16']).items()
    }
    from mmext.converters import get_converter
    convert = get_converter(family).convert
    g['state'], g['meta'], _ = convert(g['official'], arch=g['arch'])
    g['grads'] = convert(unpack(grads(g)), arch=g['arch'])[0]
    return g
