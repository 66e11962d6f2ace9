"""The converter contract, for every family of ``tests/families.py`` with a
converter: the derived inverse map round-trips, any wrapping is read, and
converted, foreign, modified, truncated and half-fused checkpoints are
refused with a clear error. Files are written atomically and never over an
existing one without ``force``."""
import pytest
import torch

from mmext.converters import (ConversionError, convert_checkpoint,
                              get_converter)
from mmext.utils.checkpoint import CorruptCheckpointError
from tests.families import FAMILIES

CONVERTIBLE = [f for f in FAMILIES if f.converter]
pytestmark = pytest.mark.parametrize('family', CONVERTIBLE,
                                     ids=[f.id for f in CONVERTIBLE])


def _official(family):
    """An official-layout state dict of the tiny arch, made by running the
    converter's rules backwards on a randomly initialised backbone."""
    torch.manual_seed(0)
    model = family.build()
    model.init_weights()
    converter = get_converter(family.converter)
    settings = type(model).parse_arch(family.arch)
    state = {k: v + 0.01 * torch.randn_like(v)  # no two tensors alike
             if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    return converter, state, converter.to_official(state, settings)


def test_round_trip_is_identity(family):
    converter, ours, official = _official(family)
    assert official.keys() != ours.keys()
    back, meta, dropped = converter.convert(official, arch=family.arch)
    assert meta['layout'] == 'backbone' and not dropped
    assert back.keys() == ours.keys()
    for key, value in ours.items():
        assert torch.equal(back[key], value), key
    converter.verify(back, meta)


@pytest.mark.parametrize('wrap', ['model', 'state_dict', 'module', 'det'])
def test_any_wrapping_is_read(family, wrap, tmp_path):
    converter, ours, official = _official(family)
    if wrap == 'module':
        ckpt = {'model': {'module.' + k: v for k, v in official.items()}}
    elif wrap == 'det':  # a downstream detector: backbone + other keys
        ckpt = {'state_dict': dict(
            {'backbone.' + k: v for k, v in official.items()},
            **{'neck.conv.weight': torch.zeros(1)})}
    else:
        ckpt = {wrap: official}
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save(ckpt, src)
    report = convert_checkpoint(family.converter, str(src), str(dst),
                                arch=family.arch)
    assert report['dropped_keys'] == (['neck.conv.weight']
                                      if wrap == 'det' else [])
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['converter'] == family.converter
    assert saved['state_dict'].keys() == ours.keys()


def test_converted_and_foreign_checkpoints_are_refused(family):
    converter, ours, official = _official(family)
    with pytest.raises(ConversionError, match='already in mmext'):
        converter.convert(ours)
    with pytest.raises(ConversionError, match='already in mmext'):
        converter.convert({'backbone.' + k: v for k, v in ours.items()})
    other = next((f for f in CONVERTIBLE if f is not family), None)
    foreign = _official(other)[2] if other else {'fc.weight': torch.ones(2)}
    with pytest.raises(ConversionError,
                       match=f'not an official {family.converter}'):
        converter.convert(foreign)


def test_unknown_and_missing_keys_are_refused(family):
    converter, _, official = _official(family)
    extra = dict(official)
    extra[next(iter(converter.signature)) + '_extra.weight'] = torch.ones(1)
    with pytest.raises(ConversionError, match='no known'):
        converter.convert(extra, arch=family.arch)
    state, meta, _ = converter.convert(official, arch=family.arch)
    victim = sorted(k for k in state if 'blocks' in k)[-1]
    del state[victim]
    with pytest.raises(ConversionError, match='missing'):
        converter.verify(state, meta)


def test_wrong_arch_is_refused(family):
    converter, _, official = _official(family)
    name = min(converter.backbone.arch_zoo, key=len)
    with pytest.raises(ConversionError, match='does not fit the given arch'):
        converter.convert(official, arch=name)
    with pytest.raises(ConversionError, match='--arch'):
        converter.convert(official, arch=dict(family.arch, bogus=1))


def test_files_truncated_existing_and_failed_writes(family, tmp_path,
                                                    monkeypatch):
    _, _, official = _official(family)
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save({'model': official}, src)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(src.read_bytes()[:200])
    with pytest.raises(CorruptCheckpointError):
        convert_checkpoint(family.converter, str(truncated), str(dst),
                           arch=family.arch)
    dst.write_bytes(b'keep me')
    with pytest.raises(FileExistsError, match='--force'):
        convert_checkpoint(family.converter, str(src), str(dst),
                           arch=family.arch)
    assert dst.read_bytes() == b'keep me'

    def fail(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', fail)
    with pytest.raises(OSError, match='disk full'):
        convert_checkpoint(family.converter, str(src), str(dst),
                           arch=family.arch, force=True)
    assert dst.read_bytes() == b'keep me'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'mmext.pth', 'official.pth', 'truncated.pth']


def test_named_variants_are_inferred_from_shapes(family):
    converter = get_converter(family.converter)
    zoo = converter.backbone
    seen = []
    for name in sorted(zoo.arch_zoo, key=len):
        settings = zoo.parse_arch(name)
        if settings in seen:
            continue  # an alias
        seen.append(settings)
        with torch.device('meta'):
            state = zoo(arch=name).state_dict()
            official = converter.to_official(state, settings)
        found = converter.infer_arch(official)
        assert converter.resolve_arch(found) == (zoo.arch_name(settings),
                                                 settings)


def test_keep_head_needs_a_head(family):
    converter, _, official = _official(family)
    with pytest.raises(ConversionError, match='no classifier head'):
        converter.convert(official, keep_head=True, arch=family.arch)
