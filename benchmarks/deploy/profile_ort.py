"""Where onnxruntime spends a forward, by ONNX op type, beside PyTorch
eager's self CPU time by aten op (one thread each), for one backbone.

    python benchmarks/deploy/profile_ort.py [--model 'Shuffle DeiT-Ti']
        [--opset 18]

Writes ``benchmarks/deploy/profile_<model>_opset<N>.json``.
"""
import argparse
import collections
import json
import os
import os.path as osp
import sys
import tempfile

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

import torch  # noqa: E402

from speed import MODELS, build  # noqa: E402


def ort_breakdown(proto, x, repeats=3):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = osp.join(tempfile.mkdtemp(), 'ort')
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}
    for _ in range(repeats + 1):
        session.run(None, feed)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    per_op = collections.Counter()
    runs = [e for e in events if e.get('name') == 'model_run']
    for e in events:
        if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time'):
            per_op[e['args']['op_name']] += e['dur']
    total = sum(e['dur'] for e in runs[1:]) / max(len(runs) - 1, 1)
    scale = 1e-6 / (len(runs) or 1)
    return total * 1e-6, {k: v * scale for k, v in per_op.most_common(12)}


def torch_breakdown(model, x, repeats=3):
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(x)
    table = collections.Counter()
    for item in prof.key_averages():
        table[item.key] += item.self_cpu_time_total
    return {k: v * 1e-6 / repeats for k, v in table.most_common(12)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='Shuffle DeiT-Ti')
    parser.add_argument('--opset', type=int, default=18)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from mmext.deploy.backbone import IMAGE_AXES, exportable_copy
    from mmext.deploy.onnx_export import export_onnx, torch_outputs
    name, cfg, shape = next(m for m in MODELS if m[0] == args.model)
    graph, _ = exportable_copy(build(cfg))
    example = torch.randn(2, 3, *shape)
    names = [f'feat{i}' for i in range(len(torch_outputs(graph,
                                                         [example])))]
    proto = export_onnx(graph, (example, ), ['image'], names,
                        dict(image=IMAGE_AXES), opset=args.opset)
    x = torch.randn(1, 3, *shape)
    total, ort_ops = ort_breakdown(proto, x)
    result = dict(model=name, input=list(x.shape), opset=args.opset,
                  load=os.getloadavg()[0], ort_run_s=total,
                  ort_kernel_s_by_op=ort_ops,
                  torch_self_cpu_s_by_op=torch_breakdown(graph, x))
    out = osp.join(HERE, f'profile_{name.replace(" ", "_")}_opset'
                   f'{args.opset}.json')
    from mmext.utils.fileio import atomic_write
    with atomic_write(out, 'w', force=True) as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
