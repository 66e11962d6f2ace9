"""Process-group initialisation under torchrun and SLURM, for every process
of a 2-node job: the environment is faked, the process-group creation is
captured, nothing is started. The shell command that finds the master node
runs for real, with a stand-in ``scontrol`` that lists the job's nodes."""
import os
import stat
import subprocess

import pytest
import torch
import torch.distributed

from mmext.apis import launch

NODES = 2
NODELIST = 'gpu-node[07-08]'
FIRST_NODE = 'gpu-node07'


def _procs(per_node):
    """(node, local rank) of every process, in global-rank order."""
    return [(n, i) for n in range(NODES) for i in range(per_node)]


class FakeProcessGroup:
    """Records ``init_process_group``; ``get_dist_info`` then answers what
    the group would: ``rank`` / ``world_size`` passed explicitly or, as with
    ``env://`` initialisation, read from RANK / WORLD_SIZE."""

    def __init__(self):
        self.calls = []

    def init_process_group(self, backend=None, **kwargs):
        self.calls.append(dict(kwargs, backend=backend,
                               env=dict(os.environ)))

    def dist_info(self):
        if not self.calls:
            return 0, 1
        call = self.calls[-1]
        rank = call.get('rank', int(call['env']['RANK']))
        world = call.get('world_size', int(call['env']['WORLD_SIZE']))
        return rank, world


SCONTROL = f"""#!/bin/sh
echo "$*" >> "$SCONTROL_LOG"
[ "$*" = "show hostname {NODELIST}" ] && printf '{FIRST_NODE}\\ngpu-node08\\n'
"""


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A clean environment, the captured process-group creation and a
    stand-in ``scontrol`` (its calls logged in ``group.scontrol_log``)."""
    real_path = os.environ.get('PATH', '/usr/bin:/bin')
    monkeypatch.setattr(os, 'environ', {'PATH': real_path})
    group = FakeProcessGroup()
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        group.init_process_group)
    monkeypatch.setattr(launch, 'is_distributed', lambda: False)
    monkeypatch.setattr(launch, 'get_dist_info', group.dist_info)

    scontrol = tmp_path / 'scontrol'
    scontrol.write_text(SCONTROL)
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    group.scontrol_log = tmp_path / 'scontrol.log'
    group.scontrol_log.write_text('')

    def getoutput(cmd):  # subprocess.getoutput, in the stand-in's PATH
        env = dict(PATH=f'{tmp_path}:{real_path}',
                   SCONTROL_LOG=str(group.scontrol_log))
        out = subprocess.run(cmd, shell=True, env=env, text=True,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout
        return out[:-1] if out.endswith('\n') else out

    monkeypatch.setattr(launch.subprocess, 'getoutput', getoutput)
    return group


def _scontrol_calls(group):
    return group.scontrol_log.read_text().splitlines()


def _fake_cuda(monkeypatch, gpus_per_node):
    devices = []
    monkeypatch.setattr(launch, 'cuda_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: gpus_per_node)
    monkeypatch.setattr(torch.cuda, 'set_device', devices.append)
    return devices


def _torchrun_env(node, local, per_node):
    # what torchrun exports to each worker
    return dict(RANK=str(node * per_node + local), LOCAL_RANK=str(local),
                WORLD_SIZE=str(NODES * per_node),
                LOCAL_WORLD_SIZE=str(per_node), GROUP_RANK=str(node),
                MASTER_ADDR='10.1.2.3', MASTER_PORT='29611')


def _slurm_env(node, local, per_node):
    # what srun exports to each task (--ntasks-per-node=per_node)
    return dict(SLURM_PROCID=str(node * per_node + local),
                SLURM_LOCALID=str(local), SLURM_NODEID=str(node),
                SLURM_NTASKS=str(NODES * per_node),
                SLURM_NTASKS_PER_NODE=str(per_node),
                SLURM_NNODES=str(NODES), SLURM_NODELIST=NODELIST)


def _every_process(fake, launcher, make_env, per_node):
    """Initialise each process of the job in turn, check the rank and world
    size it reports; yield ``(rank, local rank, captured call)``."""
    world = NODES * per_node
    for node, local in _procs(per_node):
        os.environ.clear()
        os.environ.update(make_env(node, local, per_node))
        rank = node * per_node + local
        assert launch.init_distributed(launcher) == (rank, world)
        call = fake.calls[-1]
        assert (call['env']['RANK'], call['env']['WORLD_SIZE'],
                call['env']['LOCAL_RANK']) == (str(rank), str(world),
                                               str(local))
        yield rank, local, call
    assert len(fake.calls) == world


@pytest.mark.parametrize('per_node', [1, 3])
def test_torchrun_cpu_two_nodes(fake, per_node):
    for rank, _, call in _every_process(fake, 'pytorch', _torchrun_env,
                                        per_node):
        assert call['backend'] == 'gloo'
        assert (call['rank'], call['world_size']) == (rank, NODES * per_node)
        # the rendezvous address comes from torchrun, untouched
        assert (call['env']['MASTER_ADDR'], call['env']['MASTER_PORT']) == \
            ('10.1.2.3', '29611')
    assert not _scontrol_calls(fake)


@pytest.mark.parametrize('per_node', [1, 4])
def test_slurm_cpu_two_nodes(fake, per_node):
    for rank, _, call in _every_process(fake, 'slurm', _slurm_env,
                                        per_node):
        assert call['backend'] == 'gloo'
        assert (call['rank'], call['world_size']) == (rank, NODES * per_node)
        # every process agrees on the first node of the allocation
        assert (call['env']['MASTER_ADDR'], call['env']['MASTER_PORT']) == \
            (FIRST_NODE, '29500')
    assert _scontrol_calls(fake) == [f'show hostname {NODELIST}'] * (
        NODES * per_node)


def test_slurm_keeps_a_given_master_address_and_port(fake):
    os.environ.update(_slurm_env(1, 0, 2), MASTER_ADDR='10.9.9.9',
                      MASTER_PORT='12345')
    assert launch.init_distributed('slurm') == (2, 4)
    env = fake.calls[-1]['env']
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('10.9.9.9', '12345')
    assert not _scontrol_calls(fake)


# more GPUs than processes on a node, or not a multiple: the device must
# follow the local rank, not the global one
@pytest.mark.parametrize('per_node, gpus', [(2, 8), (3, 4)])
def test_slurm_gpu_two_nodes_picks_the_local_device(fake, monkeypatch,
                                                    per_node, gpus):
    devices = _fake_cuda(monkeypatch, gpus_per_node=gpus)
    for _, local, call in _every_process(fake, 'slurm', _slurm_env,
                                         per_node):
        assert devices[-1] == local
        assert call['backend'] == 'nccl'
        assert call['env']['MASTER_ADDR'] == FIRST_NODE
    assert len(devices) == NODES * per_node


def test_torchrun_gpu_uses_mmengine_init_dist(fake, monkeypatch):
    _fake_cuda(monkeypatch, gpus_per_node=2)
    calls = []
    monkeypatch.setattr(launch, 'init_dist',
                        lambda launcher, **kw: calls.append((launcher, kw)))
    os.environ.update(_torchrun_env(1, 1, 2))
    launch.init_distributed('pytorch', dict(backend='nccl', timeout=60))
    assert calls == [('pytorch', dict(backend='nccl', timeout=60))]
    assert not fake.calls


def test_missing_variables_are_a_clear_error(fake):
    env = _torchrun_env(0, 0, 2)
    del env['MASTER_ADDR'], env['WORLD_SIZE']
    os.environ.update(env)
    with pytest.raises(RuntimeError,
                       match='WORLD_SIZE, MASTER_ADDR.*dist_train.sh'):
        launch.init_distributed('pytorch')
    assert not fake.calls


def test_unknown_launcher_is_a_clear_error(fake):
    with pytest.raises(ValueError, match="unsupported launcher 'mpi'"):
        launch.init_distributed('mpi')


def test_none_launcher_starts_nothing(fake):
    assert launch.init_distributed('none') == (0, 1)
    assert not fake.calls
