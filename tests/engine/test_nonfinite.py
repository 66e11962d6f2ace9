"""NonFiniteCheckHook on mmengine's real optimizer wrappers, step by step:
a NaN loss stops training with the update not applied, skipped steps keep
weights and BatchNorm statistics, and an AMP overflow step (inf gradients
that the GradScaler skips) is not a failure.

The hook's calls are made as mmengine's train loop makes them
(before_train, before_train_iter, train_step, after_train_iter); a full
training run through tools/train.py: tests/pipeline/test_robust.py."""
import logging
import types

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from mmext.engine.nonfinite import NonFiniteCheckHook
from mmext.errors import NonFiniteLossError

NAN = float('nan')


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.fc(x))


class _Runner(types.SimpleNamespace):
    """What the hook reads of mmengine's runner."""


def _runner(wrapper, model, tmp_path):
    return _Runner(optim_wrapper=wrapper, model=model, iter=0,
                   work_dir=str(tmp_path),
                   message_hub=MessageHub(f'nonfinite-{id(model)}'),
                   logger=logging.getLogger('test_nonfinite'))


def _train_step(hook, runner, x, scale=1.0, term=None):
    """One iteration as mmengine's loop runs it; returns the log_vars."""
    hook.before_train_iter(runner, runner.iter)
    wrapper, model = runner.optim_wrapper, runner.model
    with wrapper.optim_context(model):
        out = model(x)
    loss = out.pow(2).mean() * scale
    log_vars = {'loss': loss, 'loss_toy': loss, 'acc': torch.tensor(1.)}
    if term is not None:  # a term with gradients, e.g. NaN
        log_vars['loss_extra'] = out.mean() * term
        loss = loss + log_vars['loss_extra']
    wrapper.update_params(loss)
    hook.after_train_iter(runner, runner.iter, outputs=log_vars)
    runner.iter += 1
    return log_vars


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_the_step_is_not_applied(tmp_path):
    model = _Toy()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    runner = _runner(wrapper, model, tmp_path)
    hook = NonFiniteCheckHook()
    hook.before_train(runner)
    x = torch.randn(8, 4)
    _train_step(hook, runner, x)
    before = _state(model)
    with pytest.raises(NonFiniteLossError) as err:
        _train_step(hook, runner, x, term=NAN)
    msg = str(err.value)
    assert msg.startswith('training stopped at iteration 2: loss terms '
                          'loss_extra=nan are not finite (the update was '
                          'not applied)')
    assert 'max_skipped_steps=N' in msg and '\n' not in msg
    params = {k: v for k, v in model.state_dict().items() if 'bn.' not in k}
    assert all(torch.isfinite(p).all() for p in params.values())
    assert all(torch.equal(params[k], before[k]) for k in params)
    hook.after_train(runner)
    assert 'step' not in vars(wrapper)  # the guard is removed again


def test_inf_gradients_of_a_finite_loss_are_not_applied(tmp_path):
    model = _Toy()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    runner = _runner(wrapper, model, tmp_path)
    hook = NonFiniteCheckHook()
    hook.before_train(runner)
    # sqrt at 0: a finite loss whose gradient is inf
    model.fc.weight.register_hook(lambda g: g * float('inf'))
    before = _state(model)
    with pytest.raises(NonFiniteLossError, match='the gradients are not '
                       'finite, the loss is'):
        _train_step(hook, runner, torch.randn(8, 4))
    assert torch.equal(model.fc.weight, before['fc.weight'])


def test_skipped_steps_keep_weights_and_batchnorm_statistics(tmp_path):
    model = _Toy()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    runner = _runner(wrapper, model, tmp_path)
    hook = NonFiniteCheckHook(max_skipped_steps=1)
    hook.before_train(runner)
    x = torch.randn(8, 4)
    _train_step(hook, runner, x)
    before = _state(model)
    bad = x.clone()
    bad[0, 0] = NAN  # a NaN sample: NaN loss and NaN batch statistics
    _train_step(hook, runner, bad)
    assert _same(_state(model), before)
    assert runner.message_hub.get_info('nonfinite_skipped_steps') == 1
    _train_step(hook, runner, x)  # training goes on
    assert not torch.equal(model.fc.weight, before['fc.weight'])
    with pytest.raises(NonFiniteLossError,
                       match=r'\(2 such steps, at most 1 allowed\)'):
        _train_step(hook, runner, bad)


@pytest.fixture
def amp_wrapper(monkeypatch):
    """mmengine's AmpOptimWrapper with a CPU GradScaler: its own backward
    (scaled loss), step (scaler.step + update) and state; the GPU check of
    its constructor is passed."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp

    def make(model):
        monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
        wrapper = AmpOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            loss_scale='dynamic')
        wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
        wrapper.optim_context = lambda model: torch.autocast(
            'cpu', dtype=torch.bfloat16)
        return wrapper

    return make


def test_amp_overflow_is_skipped_by_the_scaler_not_a_failure(
        tmp_path, amp_wrapper, caplog):
    model = _Toy()
    wrapper = amp_wrapper(model)
    runner = _runner(wrapper, model, tmp_path)
    hook = NonFiniteCheckHook()
    hook.before_train(runner)
    x = torch.randn(8, 4)
    before = _state(model)
    # a finite loss whose scaled gradients overflow fp32
    with caplog.at_level(logging.INFO, logger='test_nonfinite'):
        log_vars = _train_step(hook, runner, x, scale=1e36)
    assert torch.isfinite(log_vars['loss'])
    assert 'AMP gradient overflow' in caplog.text
    assert wrapper.loss_scaler.get_scale() < 2.**16
    params = [k for k in before if 'fc.' in k]
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in params)
    _train_step(hook, runner, x)  # and the next step trains
    assert not torch.equal(model.fc.weight, before['fc.weight'])
    assert runner.message_hub.get_info('nonfinite_skipped_steps', 0) == 0

    with pytest.raises(NonFiniteLossError,
                       match='loss_extra=nan are not finite \\(the loss '
                       'scaler skipped the update\\)'):
        _train_step(hook, runner, x, term=NAN)


def test_cpu_bf16_amp_without_loss_scaling_is_guarded(tmp_path):
    """mmext's DeviceAmpOptimWrapper on a CPU: bfloat16 autocast and no
    GradScaler, so nothing else would keep a NaN step from the weights."""
    from mmext.engine.amp import DeviceAmpOptimWrapper
    model = _Toy()
    wrapper = DeviceAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert wrapper.loss_scaler is None
    runner = _runner(wrapper, model, tmp_path)
    hook = NonFiniteCheckHook()
    hook.before_train(runner)
    x = torch.randn(8, 4)
    _train_step(hook, runner, x)
    before = _state(model)
    with pytest.raises(NonFiniteLossError, match='loss_extra=nan are not '
                       'finite \\(the update was not applied\\)'):
        _train_step(hook, runner, x, term=NAN)
    assert torch.equal(model.fc.weight, before['fc.weight'])


def test_checkpoint_hook_never_writes_nonfinite_state(tmp_path):
    """Whatever asks for a save (the hook's interval, a best checkpoint, a
    save at SIGTERM), mmengine passes the checkpoint dict through the
    hooks' before_save_checkpoint last; NaN there is refused."""
    from mmext.engine.hooks import SafeCheckpointHook
    from mmext.errors import NonFiniteCheckpointError
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    runner = _runner(None, _Toy(), tmp_path)
    hook = SafeCheckpointHook(interval=1)
    hook._saving = str(tmp_path / 'iter_3.pth')
    good = dict(state_dict=_Toy().state_dict(),
                optimizer=dict(state={0: dict(momentum_buffer=torch.ones(2))}))
    hook.before_save_checkpoint(runner, good)
    for key, what in (('state_dict', 'weights'),
                      ('optimizer', 'optimizer state')):
        bad = dict(good)
        if key == 'state_dict':
            bad[key] = dict(good[key], **{'bn.running_var': torch.tensor(
                [1., float('inf')])})
        else:
            bad[key] = dict(state={0: dict(momentum_buffer=torch.tensor(
                [NAN, 1.]))})
        with pytest.raises(NonFiniteCheckpointError) as err:
            hook.before_save_checkpoint(runner, bad)
        assert str(err.value).startswith(
            f'not saving {tmp_path}/iter_3.pth: its {what} are not finite '
            '(1 of ')
        assert f'last_checkpoint still names {tmp_path}/iter_2.pth' in \
            str(err.value)
