"""Training that stops, in one line, when its loss or gradients stop being
numbers.

A learning rate far too high drives the loss to NaN; mmengine trains on,
saves the NaN weights and exits 0. :class:`NonFiniteCheckHook` (registered
by the mmext runner as ``default_hooks.nonfinite``) makes every optimizer
step conditional on finite gradients and stops training at the first step
whose loss terms or gradients are NaN or inf, naming the iteration and the
terms; the step is never applied, so the weights stay those of the last
good step. With ``max_skipped_steps=N`` up to N such steps are skipped
and training goes on: the update is not applied and the buffers the forward
pass changed (BatchNorm statistics) are restored.

Mixed precision: a ``GradScaler`` (``AmpOptimWrapper``) already skips
steps whose scaled gradients overflow and lowers its scale; that is how
dynamic loss scaling works, not a failure, so it is left alone and only
logged. A non-finite *loss* under AMP is a real failure and counts as
above (the scaler has skipped the update, the weights are intact).

:class:`~mmext.engine.hooks.SafeCheckpointHook` refuses to save non-finite
weights or optimizer state whatever this hook is set to.
"""
import functools
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook

from mmext.errors import NonFiniteLossError
from mmext.registry import HOOKS
from mmext.utils.checkpoint import read_last_checkpoint
from .dist import any_rank


def _wrappers(optim_wrapper) -> list:
    """The single optimizer wrappers inside an ``OptimWrapperDict``."""
    inner = getattr(optim_wrapper, 'optim_wrappers', None)
    return list(inner.values()) if isinstance(inner, dict) else \
        [optim_wrapper]


def active_grad_scaler(wrapper) -> Optional[object]:
    """The wrapper's enabled loss scaler (``AmpOptimWrapper.loss_scaler``),
    which skips steps with non-finite gradients by itself; None without
    one (fp32, or bf16 autocast without scaling)."""
    scaler = getattr(wrapper, 'loss_scaler', None)
    if scaler is None or not hasattr(scaler, 'get_scale'):
        return None
    enabled = getattr(scaler, 'is_enabled', lambda: True)()
    return scaler if enabled else None


def _grads(wrapper) -> List[torch.Tensor]:
    return [p.grad for group in wrapper.optimizer.param_groups
            for p in group['params'] if p.grad is not None]


def grads_finite(wrapper) -> bool:
    """Whether every gradient the wrapper's optimizer would apply is finite
    (one fused norm, one synchronisation)."""
    grads = _grads(wrapper)
    if not grads:
        return True
    # in fp32: the norm of large but finite fp16 gradients must not overflow
    norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
    return bool(torch.isfinite(torch.stack(norms)).all())


def _loss_terms(outputs) -> Dict[str, torch.Tensor]:
    if not isinstance(outputs, dict):
        return {}
    return {k: v for k, v in outputs.items()
            if 'loss' in k and torch.is_tensor(v)}


def nonfinite_terms(outputs) -> Dict[str, float]:
    """``{name: value}`` of the loss terms in a train step's ``log_vars``
    that are NaN or inf (one synchronisation)."""
    terms = _loss_terms(outputs)
    if not terms:
        return {}
    values = torch.stack([v.detach().float().mean() for v in terms.values()])
    return {name: float(value) for name, value, ok in zip(
        terms, values.tolist(), torch.isfinite(values).tolist()) if not ok}


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop (or skip a bounded number of) training steps whose loss terms or
    gradients are NaN or inf; steps with non-finite gradients are never
    applied.

    Args:
        max_skipped_steps (int): how many such steps a run may skip before
            it stops (counted over the whole run, resumes included). 0 (the
            default): stop at the first one.
    """

    # after the logger (60) and the schedulers (70), before checkpoints (90):
    # a failed step stops the run before it can be saved
    priority = 80

    def __init__(self, max_skipped_steps: int = 0):
        if not isinstance(max_skipped_steps, int) or max_skipped_steps < 0:
            raise ValueError('NonFiniteCheckHook: max_skipped_steps must be '
                             f'an int >= 0, got {max_skipped_steps!r}')
        self.max_skipped_steps = max_skipped_steps
        self._guarded: list = []
        self._refused = False  # a step refused by the guard this iteration
        self._scales: list = []
        self._buffers: list = []

    # -- guarding the optimizer step --------------------------------------
    def before_train(self, runner) -> None:
        for wrapper in _wrappers(runner.optim_wrapper):
            if active_grad_scaler(wrapper) is None:
                self._guard(wrapper)

    def _guard(self, wrapper) -> None:
        original = wrapper.step

        # wraps: keeps the marks of mmengine's parameter schedulers, which
        # count steps through a wrapper of their own
        @functools.wraps(original)
        def step(**kwargs):
            if grads_finite(wrapper):
                return original(**kwargs)
            self._refused = True  # update_params zeroes the gradients next

        own = vars(wrapper).get('step')  # set on the instance before us
        wrapper.step = step
        self._guarded.append((wrapper, own))

    def after_train(self, runner) -> None:
        for wrapper, own in self._guarded:
            if own is None:
                del wrapper.step
            else:
                wrapper.step = own
        self._guarded = []

    # -- judging each iteration -------------------------------------------
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._refused = False
        self._scales = [(s, s.get_scale()) for s in map(
            active_grad_scaler, _wrappers(runner.optim_wrapper)) if s]
        if self.max_skipped_steps:
            # a NaN forward pass poisons BatchNorm statistics even when the
            # update is not applied: keep them to restore
            self._buffers = [(b, b.detach().clone())
                             for b in runner.model.buffers()]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        bad = nonfinite_terms(outputs)
        overflow = any(s.get_scale() < before for s, before in self._scales)
        failed = any_rank(bool(bad) or self._refused)
        step = runner.iter + 1
        if not failed:
            if overflow:
                runner.logger.info(
                    f'iteration {step}: AMP gradient overflow, the loss '
                    'scaler skipped the step and lowered its scale to '
                    f'{self._scales[0][0].get_scale():g} (normal in mixed '
                    'precision)')
            return
        hub = runner.message_hub
        skipped = hub.get_info('nonfinite_skipped_steps', 0) + 1
        hub.update_info('nonfinite_skipped_steps', skipped)
        what = self._describe(bad, overflow)
        if skipped <= self.max_skipped_steps:
            with torch.no_grad():
                for buffer, saved in self._buffers:
                    buffer.copy_(saved)
            runner.logger.warning(
                f'iteration {step}: {what}; training goes on ({skipped} of '
                f'at most {self.max_skipped_steps} non-finite steps).')
            return
        allowed = (f' ({skipped} such steps, at most '
                   f'{self.max_skipped_steps} allowed)'
                   if self.max_skipped_steps else '')
        raise NonFiniteLossError(
            f'training stopped at iteration {step}: {what}{allowed}; '
            f'{_last_checkpoint_note(runner)} Lower the learning rate or '
            'clip gradients (optim_wrapper.clip_grad), or allow N skipped '
            'steps with --cfg-options '
            'default_hooks.nonfinite.max_skipped_steps=N.')

    def _describe(self, bad: Dict[str, float], overflow: bool) -> str:
        if not bad:
            return ('the gradients are not finite, the loss is (the update '
                    'was not applied)')
        if len(bad) > 1:
            bad.pop('loss', None)  # the sum of the others
        terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        applied = ('the loss scaler skipped the update' if overflow else
                   'the update was not applied' if self._refused else
                   'the gradients were finite and were applied')
        return f'loss terms {terms} are not finite ({applied})'


def _last_checkpoint_note(runner) -> str:
    """Where a resume would start from, for the stop message."""
    named = read_last_checkpoint(runner.work_dir)
    if named:
        return ('these weights were not saved, last_checkpoint still names '
                f'{named}.')
    return 'these weights were not saved (no checkpoint was written yet).'
