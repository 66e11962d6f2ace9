"""Process-group initialisation under torchrun and SLURM, for every process
of a 2-node job: the environment is faked, the process-group creation (and
the ``scontrol`` call that finds the master node) is captured, nothing is
started."""
import os

import pytest
import torch
import torch.distributed

from mmext.utils import launch

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


@pytest.fixture
def fake(monkeypatch):
    """A clean environment and the captured process-group creation."""
    monkeypatch.setattr(os, 'environ', {'PATH': '/usr/bin'})
    group = FakeProcessGroup()
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        group.init_process_group)
    monkeypatch.setattr(launch, 'is_distributed', lambda: False)
    monkeypatch.setattr(launch, 'get_dist_info', group.dist_info)
    group.scontrol = []

    def getoutput(cmd):
        group.scontrol.append(cmd)
        return FIRST_NODE + '\n'  # the command ends in `| head -n1`

    monkeypatch.setattr(launch.subprocess, 'getoutput', getoutput)
    return group


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


@pytest.mark.parametrize('per_node', [1, 3])
def test_torchrun_cpu_two_nodes(fake, per_node):
    for node, local in _procs(per_node):
        os.environ.clear()
        os.environ.update(_torchrun_env(node, local, per_node))
        rank = node * per_node + local
        assert launch.init_distributed('pytorch') == (rank,
                                                      NODES * per_node)
        call = fake.calls[-1]
        assert call['backend'] == 'gloo'
        assert (call['rank'], call['world_size']) == (rank, NODES * per_node)
        # the rendezvous address comes from torchrun, untouched
        assert call['env']['MASTER_ADDR'] == '10.1.2.3'
        assert call['env']['MASTER_PORT'] == '29611'
        assert call['env']['LOCAL_RANK'] == str(local)
    assert len(fake.calls) == NODES * per_node
    assert not fake.scontrol


@pytest.mark.parametrize('per_node', [1, 4])
def test_slurm_cpu_two_nodes(fake, per_node):
    for node, local in _procs(per_node):
        os.environ.clear()
        os.environ.update(_slurm_env(node, local, per_node))
        rank = node * per_node + local
        assert launch.init_distributed('slurm') == (rank, NODES * per_node)
        call = fake.calls[-1]
        assert call['backend'] == 'gloo'
        assert (call['rank'], call['world_size']) == (rank, NODES * per_node)
        env = call['env']
        assert (env['RANK'], env['LOCAL_RANK'], env['WORLD_SIZE']) == \
            (str(rank), str(local), str(NODES * per_node))
        # every process agrees on the first node of the allocation
        assert env['MASTER_ADDR'] == FIRST_NODE
        assert env['MASTER_PORT'] == '29500'
        assert fake.scontrol[-1].startswith(
            f'scontrol show hostname {NODELIST}')
    assert len(fake.scontrol) == NODES * per_node


def test_slurm_keeps_a_given_master_address_and_port(fake):
    os.environ.update(_slurm_env(1, 0, 2), MASTER_ADDR='10.9.9.9',
                      MASTER_PORT='12345')
    assert launch.init_distributed('slurm') == (2, 4)
    env = fake.calls[-1]['env']
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('10.9.9.9', '12345')
    assert not fake.scontrol


@pytest.mark.parametrize('per_node', [2, 4])
def test_slurm_gpu_two_nodes_picks_the_local_device(fake, monkeypatch,
                                                    per_node):
    devices = _fake_cuda(monkeypatch, gpus_per_node=per_node)
    for node, local in _procs(per_node):
        os.environ.clear()
        os.environ.update(_slurm_env(node, local, per_node))
        rank = node * per_node + local
        assert launch.init_distributed('slurm') == (rank, NODES * per_node)
        assert devices[-1] == local
        call = fake.calls[-1]
        assert call['backend'] == 'nccl'
        assert (call['env']['RANK'], call['env']['WORLD_SIZE']) == \
            (str(rank), str(NODES * per_node))
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
