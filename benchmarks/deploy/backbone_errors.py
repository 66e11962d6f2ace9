"""onnxruntime vs PyTorch eval for every family's tiny arch (the test
archs, ``tests/families.py``): one export each with dynamic batch / height
/ width at 256x288, the largest relative error over the outputs at each
checked input size.

    python benchmarks/deploy/backbone_errors.py

Writes ``benchmarks/deploy/backbone_errors.json`` and ``.md``.
"""
import json
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

import torch  # noqa: E402

SHAPES = [(2, 3, 256, 288), (1, 3, 75, 101), (2, 3, 64, 96), (1, 3, 33, 47),
          (1, 3, 250, 230)]


def main():
    from mmext.deploy.backbone import (IMAGE_AXES, exportable_copy,
                                       probe_example)
    from mmext.deploy.onnx_export import check_onnx, export_onnx, ort_session
    from mmext.utils.fileio import atomic_write
    from tests.families import FAMILIES
    rows = []
    for family in FAMILIES:
        torch.manual_seed(0)
        model = family.build().eval()
        graph, notes = exportable_copy(model)
        example = torch.randn(*SHAPES[0])
        names = [f'feat{i}'
                 for i in range(len(probe_example(graph, [example])))]
        session = ort_session(
            export_onnx(graph, (example, ), ['image'], names,
                        dict(image=IMAGE_AXES)))
        inputs = [(torch.randn(*s), ) for s in SHAPES]
        row = dict(family=family.type, exported=notes or ['as in eval'],
                   vs_exported_form=dict(
                       zip(map(str, SHAPES), check_onnx(session, graph,
                                                        inputs))))
        if family.type == 'AViT':
            row['vs_token_removal'] = dict(
                zip(map(str, SHAPES), check_onnx(session, model, inputs)))
        row['load'] = os.getloadavg()[0]
        rows.append(row)
        print(row, flush=True)
    with atomic_write(osp.join(HERE, 'backbone_errors.json'), 'w',
                      force=True) as f:
        json.dump(rows, f, indent=1)
    head = ['family'] + ['x'.join(map(str, s)) for s in SHAPES]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        for key in ('vs_exported_form', 'vs_token_removal'):
            if key in row:
                label = row['family'] + (' (vs token removal)'
                                         if key == 'vs_token_removal' else '')
                lines.append('| ' + ' | '.join(
                    [label] + [f'{e:.1e}' for e in row[key].values()]) +
                             ' |')
    with atomic_write(osp.join(HERE, 'backbone_errors.md'), 'w',
                      force=True) as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
