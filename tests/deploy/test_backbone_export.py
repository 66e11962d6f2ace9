"""Every backbone family (tiny archs) exported with dynamic batch, height
and width: onnxruntime equals PyTorch eval at the export size and at
others (not multiples of 32, batch 1), one export per family.

Tolerance: max|ORT - PyTorch| / max|PyTorch| <= 1e-5 per output; measured
(torch 2.13, onnxruntime 1.32, CPU) 3.5e-7 .. 1.4e-6 over the families and
sizes below.
"""
import pytest
import torch

from mmext.deploy.backbone import (IMAGE_AXES, exportable_copy,
                                   probe_example)
from mmext.deploy.onnx_export import (ExportError, check_onnx, export_onnx,
                                      ort_session)
from tests.families import FAMILIES

TOL = 1e-5
#: traced at 256x288: every window attention sees two or more windows
#: per side (see probe_example); checked at the brief's odd sizes too
EXPORT_SIZE = (256, 288)
CHECK_SHAPES = [(2, 3, 256, 288), (1, 3, 75, 101), (2, 3, 64, 96),
                (1, 3, 33, 47)]


@pytest.fixture(scope='module', params=FAMILIES, ids=lambda f: f.id)
def exported(request):
    family = request.param
    torch.manual_seed(0)
    model = family.build().eval()
    graph, notes = exportable_copy(model)
    example = torch.randn(2, 3, *EXPORT_SIZE)
    names = [f'feat{i}' for i in range(len(probe_example(graph,
                                                         [example])))]
    proto = export_onnx(graph, (example, ), ['image'], names,
                        dict(image=IMAGE_AXES))
    return family, model, graph, ort_session(proto), notes


def test_onnxruntime_equals_pytorch(exported):
    family, model, graph, session, _ = exported
    torch.manual_seed(1)
    inputs = [(torch.randn(*s), ) for s in CHECK_SHAPES
              if min(s[2:]) >= family.min_size]
    errors = check_onnx(session, graph, inputs)
    assert max(errors) <= TOL, dict(zip(CHECK_SHAPES, errors))
    if family.type == 'AViT':
        # the masked graph also equals PyTorch eval's default, token removal
        assert model.token_removal
        removal = check_onnx(session, model, inputs)
        assert max(removal) <= TOL, dict(zip(CHECK_SHAPES, removal))


def test_exported_form_is_named(exported):
    family, _, _, _, notes = exported
    if family.type == 'AViT':
        assert any('masked form' in n for n in notes)
    else:
        assert not notes


@pytest.mark.parametrize('family', [f for f in FAMILIES
                                    if f.type in ('ELSASwin', 'ShuffleSwin')],
                         ids=lambda f: f.id)
def test_window_attention_example_too_small(family):
    """At 64x96 the stride-32 stage is one 7x7 window: refused, with the
    size to export at."""
    graph, _ = exportable_copy(family.build())
    with pytest.raises(ExportError, match='at least 256 pixels'):
        probe_example(graph, [torch.randn(2, 3, 64, 96)])
