"""A hook that reports the dtype the backbone's linear layers compute in
during training (custom_imports: 'amp_probe'), one line per iteration:
``amp probe: iter N linear outputs {dtypes}``."""
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class AmpProbeHook(Hook):

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        self.seen = set()
        for module in model.backbone.modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(self._record)

    def _record(self, module, args, out):
        self.seen.add(str(out.dtype))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        runner.logger.info(f'amp probe: iter {runner.iter} linear outputs '
                           f'{sorted(self.seen)}')
        self.seen = set()
