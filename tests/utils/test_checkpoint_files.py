"""Every bad checkpoint file gets one error naming the file and what to do;
weights that do not fit the model are refused."""
import os
import pickle

import pytest
import torch
import torch.nn as nn

from mmext.utils.checkpoint import (CheckpointMismatchError,
                                    CorruptCheckpointError,
                                    NotResumableError,
                                    UntrustedCheckpointError,
                                    check_resumable, check_state_dict_fits,
                                    compare_state_dicts,
                                    find_resume_checkpoint,
                                    is_complete_checkpoint,
                                    load_checkpoint_file,
                                    load_pretrained_strict)


def _good(tmp_path, name='good.pth', **extra):
    path = tmp_path / name
    torch.save(dict({'state_dict': {'w': torch.ones(300)}}, **extra), path)
    return path


def _bad_files(tmp_path):
    good = _good(tmp_path).read_bytes()
    files = {
        'empty': b'',
        'truncated': good[:len(good) // 2],
        'text': b'epoch 12, best mAP 0.41\nsee train.log\n',
        'json': b'{"state_dict": {}}',
        'numpy': b'\x93NUMPY\x01\x00' + bytes(64),
        'other pickle': pickle.dumps({'a': [1, 2, 3]}),
        'zip of something else': b'PK\x05\x06' + bytes(18),
    }
    paths = {}
    for kind, data in files.items():
        paths[kind] = tmp_path / (kind.replace(' ', '_') + '.pth')
        paths[kind].write_bytes(data)
    paths['folder'] = tmp_path / 'folder.pth'
    paths['folder'].mkdir()
    return paths


@pytest.mark.parametrize('kind', [
    'empty', 'truncated', 'text', 'json', 'numpy', 'other pickle',
    'zip of something else', 'folder'
])
def test_bad_file_gets_one_clear_error(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CorruptCheckpointError) as err:
        load_checkpoint_file(str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert '\n' not in msg
    assert any(fix in msg for fix in ('again', 'give the .pth'))
    assert not is_complete_checkpoint(str(path))


@pytest.mark.skipif(os.getuid() == 0, reason='root reads any file')
def test_unreadable_file(tmp_path):
    path = _good(tmp_path)
    path.chmod(0)
    with pytest.raises(PermissionError, match='permission denied'):
        load_checkpoint_file(str(path))


def test_code_in_pickle_is_still_refused_as_untrusted(tmp_path):
    path = tmp_path / 'code.pth'
    torch.save({'f': os.getcwd}, path)
    with pytest.raises(UntrustedCheckpointError, match='posix.getcwd'):
        load_checkpoint_file(str(path))


def test_mmap_reads_the_structure_only(tmp_path):
    path = _good(tmp_path)
    loaded = load_checkpoint_file(str(path), mmap=True)
    assert loaded['state_dict']['w'].sum() == 300


class _Tiny(nn.Module):

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 2)


def test_compare_state_dicts_counts_each_kind():
    ours = _Tiny(8).state_dict()
    theirs = dict(_Tiny(16).state_dict(), extra=torch.zeros(1))
    del theirs['head.bias']
    theirs.pop('norm.num_batches_tracked')  # not counted as missing
    missing, unexpected, mismatched = compare_state_dicts(ours, theirs)
    assert missing == ['head.bias']
    assert unexpected == ['extra']
    assert [m[0] for m in mismatched] == [
        'stem.weight', 'stem.bias', 'norm.weight', 'norm.bias',
        'norm.running_mean', 'norm.running_var', 'head.weight'
    ]


def test_mismatch_message_is_one_line_with_counts_and_examples():
    with pytest.raises(CheckpointMismatchError) as err:
        check_state_dict_fits(_Tiny(8), _Tiny(16).state_dict(), 'x.pth',
                              'Do this.')
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('x.pth does not fit the model')
    assert '7 of another shape (stem.weight: model [8, 3, 3, 3], file ' \
        '[16, 3, 3, 3]' in msg
    assert '(5 more)' in msg and msg.endswith('Do this.')


def test_pretrained_of_another_size_is_refused(tmp_path):
    small = tmp_path / 'small.pth'
    torch.save({'state_dict': _Tiny(8).state_dict()}, small)
    model = _Tiny(16)
    before = model.stem.weight.clone()
    with pytest.raises(CheckpointMismatchError, match='small.pth'):
        load_pretrained_strict(model, str(small))
    assert torch.equal(model.stem.weight, before)  # nothing half-loaded

    fitting = _Tiny(16)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               fitting.state_dict().items()},
                'meta': {}}, tmp_path / 'full.pth')
    loaded = load_pretrained_strict(model, str(tmp_path / 'full.pth'),
                                    prefix='backbone')
    assert torch.equal(model.stem.weight, fitting.stem.weight)
    assert 'stem.weight' in loaded
    # a module built without some parts: their keys are named as unused
    del model.head
    with pytest.raises(CheckpointMismatchError, match='2 unexpected'):
        load_pretrained_strict(model, str(tmp_path / 'full.pth'),
                               prefix='backbone')
    load_pretrained_strict(model, str(tmp_path / 'full.pth'),
                           prefix='backbone', unused=('head.', ))
    with pytest.raises(CheckpointMismatchError, match="no keys under 'neck.'"):
        load_pretrained_strict(model, str(tmp_path / 'full.pth'),
                               prefix='neck.')


def test_converted_weights_are_not_resumable(tmp_path):
    path = _good(tmp_path, meta={'arch': 's'})
    with pytest.raises(NotResumableError, match='not a training checkpoint'):
        check_resumable(str(path))


def test_resume_finds_the_newest_complete_checkpoint(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None  # fresh start
    for step in (1, 2):
        _good(tmp_path, f'iter_{step}.pth')
    (tmp_path / 'iter_3.pth').write_bytes(b'')  # killed mid-save (mmengine)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    notes = []
    assert find_resume_checkpoint(str(tmp_path), log=notes.append) == \
        str(tmp_path / 'iter_2.pth')
    assert 'iter_3.pth, which is incomplete' in notes[0]
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_1.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_1.pth')
