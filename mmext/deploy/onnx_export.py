"""Export a module to ONNX with dynamic axes, and check it in onnxruntime.

The graph is captured by ``torch.export`` (``torch.onnx.export(...,
dynamo=True)``), which traces sizes as symbols: shape arithmetic stays in
the graph (ONNX ``Shape`` / ``Div`` / ``Slice`` nodes) instead of being
frozen at the example's values as the TorchScript tracer does. Dynamic axes
are given as names (``{'image': {0: 'batch', 2: 'height', 3: 'width'}}``),
which ``torch.onnx`` turns into ``Dim.DYNAMIC``. Such a dimension still
takes the example's branch of any Python ``if`` on a size, without an error;
the models exported here keep such choices in tensors, and
:func:`check_onnx` compares onnxruntime with PyTorch at sizes other than
the example's, which is what catches a branch that was frozen.
"""
import contextlib
import io
import logging
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from mmext.utils.fileio import atomic_write

#: the opset of torch's ONNX function library (``torch.onnx`` converts a
#: graph built for it to another opset afterwards)
DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """A model or an input that this exporter cannot turn into a working
    ONNX graph; the message names the part and what to do."""


def _quiet():
    """torch.onnx prints its progress to stdout and logs warnings about
    every op it decomposes; one line per export is what the tools print."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter('ignore')
    for name in ('torch.onnx', 'torch.export', 'onnxscript'):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, level)
    return stack


def export_onnx(module: nn.Module,
                args: Tuple[Tensor, ...],
                input_names: Sequence[str],
                output_names: Sequence[str],
                dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
                opset: int = DEFAULT_OPSET):
    """``module`` (in eval mode, without autograd) as an ONNX ``ModelProto``.

    Args:
        module: the module; called as ``module(*args)``, returning a tensor
            or a tuple of tensors.
        args: example inputs. Give every dynamic axis an example size of at
            least 2 (torch.export treats sizes 0 and 1 as constants).
        input_names / output_names: names of the graph's inputs / outputs.
        dynamic_axes: per input name, ``{axis: dim name}``; the outputs'
            dynamic sizes follow from the graph.
        opset: ONNX opset.

    Returns:
        onnx.ModelProto
    """
    from .rewrites import export_rewrites
    dynamic_axes = dynamic_axes or {}
    unknown = set(dynamic_axes) - set(input_names)
    if unknown:
        raise ValueError(f'dynamic_axes names {sorted(unknown)} are not '
                         f'inputs; inputs: {list(input_names)}')
    for name, arg in zip(input_names, args):
        for axis in dynamic_axes.get(name, {}):
            if arg.shape[axis] < 2:
                raise ValueError(
                    f'the example {name!r} has size {arg.shape[axis]} on '
                    f'dynamic axis {axis}: export with a size of at least 2 '
                    '(the graph still runs with 1)')
    dynamic_shapes = tuple(dynamic_axes.get(n) for n in input_names)
    module.eval()
    with torch.no_grad(), export_rewrites(), _quiet():
        try:
            program = torch.onnx.export(module,
                                        tuple(args),
                                        dynamo=True,
                                        input_names=list(input_names),
                                        output_names=list(output_names),
                                        opset_version=opset,
                                        dynamic_shapes=dynamic_shapes,
                                        optimize=True,
                                        verbose=False)
        except Exception as err:  # noqa: BLE001 - one line, the cause kept
            first = ' '.join(str(err).split('\n')[0].split())[:400]
            raise ExportError(f'torch.onnx.export failed: '
                              f'{type(err).__name__}: {first}') from err
    return program.model_proto


def simplify_onnx(model):
    """onnxsim's simplification (constant folding, shape-op fusion); the
    dynamic axes stay dynamic."""
    import onnxsim
    with _quiet():
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError('onnxsim could not check the simplified model '
                          'against the original; export without --simplify')
    return simplified


def save_onnx(model, out_file: str, force: bool = False,
              meta: Optional[Dict[str, str]] = None) -> None:
    """Write ``model`` to ``out_file`` atomically (never a partial file;
    an existing file only with ``force``), with ``meta`` as metadata."""
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    data = model.SerializeToString()
    with atomic_write(out_file, 'wb', force=force) as f:
        f.write(data)


def ort_session(model, threads: Optional[int] = None):
    """An onnxruntime CPU session for a path, bytes or a ``ModelProto``."""
    import onnxruntime as ort
    if hasattr(model, 'SerializeToString'):
        model = model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options,
                                providers=['CPUExecutionProvider'])


def run_session(session, inputs: Sequence) -> List[np.ndarray]:
    """Run ``session`` on positional inputs (tensors or arrays)."""
    names = [i.name for i in session.get_inputs()]
    feed = {
        n: (x.detach().cpu().numpy() if torch.is_tensor(x) else x)
        for n, x in zip(names, inputs)
    }
    return session.run(None, feed)


def max_rel_error(actual, expected) -> float:
    """``max|actual - expected| / max|expected|`` (the goldens' measure)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f'shape {actual.shape} != expected {expected.shape}')
    scale = np.abs(expected).max()
    return float(np.abs(actual - expected).max() / (scale or 1.))


def torch_outputs(module: nn.Module, inputs: Sequence[Tensor]) -> List:
    """The module's outputs (eval, no autograd) as a flat list."""
    module.eval()
    with torch.no_grad():
        out = module(*inputs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_onnx(session, module: nn.Module,
               input_sets: Sequence[Sequence[Tensor]]) -> List[float]:
    """onnxruntime against PyTorch: for each set of inputs, the largest
    :func:`max_rel_error` over the outputs."""
    errors = []
    for inputs in input_sets:
        expected = torch_outputs(module, inputs)
        actual = run_session(session, inputs)
        if len(actual) != len(expected):
            raise ExportError(f'the ONNX graph returns {len(actual)} '
                              f'outputs, PyTorch {len(expected)}')
        errors.append(
            max(
                max_rel_error(a, e.float().numpy())
                for a, e in zip(actual, expected)))
    return errors


def onnx_input_shapes(model) -> Dict[str, list]:
    """Input name -> dims (ints, or names for dynamic axes)."""
    shapes = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_param or d.dim_value for d in dims]
    return shapes


def is_onnx_file(path: str) -> bool:
    return osp.splitext(path)[1].lower() == '.onnx'
