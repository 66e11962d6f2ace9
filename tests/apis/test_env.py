from mmext.apis import env


def test_env_report_lists_the_stack():
    info = env.collect_env()
    for name in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg',
                 'mmpretrain', 'mmext', 'cuda available', 'mmcv ops compiled'):
        assert name in info
    assert info['mmcv ops compiled'] is True
    assert 'cpu' in info['mmcv ops devices']


def test_stack_check_passes():
    assert env.check_stack() == []


def test_cli_prints_report(capsys):
    assert env.main([]) == 0
    out = capsys.readouterr().out
    assert 'mmcv ops compiled: True' in out
