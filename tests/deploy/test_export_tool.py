"""tools/export_onnx.py's refusals: one line on stderr, exit status 1,
nothing written, before any model is built."""
import os

from mmext.deploy.export_tool import main


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith('tools/export_onnx.py: error: '), err
    return err[0]


def test_missing_config(tmp_path, capsys):
    out = tmp_path / 'm.onnx'
    assert main([str(tmp_path / 'nope.py'), 'x.pth', str(out)]) == 1
    assert 'nope.py' in _error(capsys) and not out.exists()


def test_broken_config(tmp_path, capsys):
    config = tmp_path / 'bad.py'
    config.write_text('model = dict(\n')
    assert main([str(config), 'x.pth', str(tmp_path / 'm.onnx')]) == 1
    assert 'syntax error at line' in _error(capsys)


def test_existing_output_needs_force(seg_demo, tmp_path, capsys):
    config, checkpoint = seg_demo
    out = tmp_path / 'm.onnx'
    out.write_bytes(b'keep me')
    assert main([config, checkpoint, str(out)]) == 1
    assert 'pass --force' in _error(capsys)
    assert out.read_bytes() == b'keep me'
    assert os.listdir(tmp_path) == ['m.onnx']  # no partial file either


def test_output_must_be_onnx(seg_demo, tmp_path, capsys):
    config, checkpoint = seg_demo
    assert main([config, checkpoint, str(tmp_path / 'm.txt')]) == 1
    assert '.onnx' in _error(capsys)


def test_checkpoint_of_another_model(seg_demo, tmp_path, capsys):
    import torch
    config, _ = seg_demo
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.x': torch.zeros(1)}), other)
    out = tmp_path / 'm.onnx'
    assert main([config, str(other), str(out)]) == 1
    assert 'does not fit the model' in _error(capsys) and not out.exists()
