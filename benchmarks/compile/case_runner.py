"""What the scripts of this folder share: each case runs in a fresh
process (``SCRIPT --out OUT --worker SPEC``, so compiled code and dynamo's
caches never carry over), which prints its result as one ``RESULT {json}``
line; the driver merges results into the ``--out`` json (and its ``.md``)
after every case, so an interrupted run keeps what it measured."""
import json
import os
import os.path as osp
import subprocess
import sys

RESULT = 'RESULT '


def report(result: dict) -> None:
    """The worker's side: print the result for the driver."""
    print(RESULT + json.dumps(result), flush=True)


def run_case(script: str, out: str, spec: dict, cwd: str, env=None,
             timeout=None) -> dict:
    """Run one case of ``script`` in a new process; its result, or
    ``dict(error=...)`` with the last error line of its output (or the
    timeout)."""
    try:
        proc = subprocess.run(
            [sys.executable, osp.abspath(script), '--out', out, '--worker',
             json.dumps(spec)],
            cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f'not done after {timeout} s '
                    f'(load {os.getloadavg()[0]:.1f})')
    lines = proc.stdout.splitlines()
    found = [line for line in lines if line.startswith(RESULT)]
    if proc.returncode == 0 and found:
        return json.loads(found[-1][len(RESULT):])
    errors = [line for line in lines if 'Error' in line] or lines[-1:] or \
        ['no output']
    return dict(error=errors[-1])


def load_results(path: str) -> dict:
    """The results of earlier runs in ``path`` (kept, merged into)."""
    if not osp.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def save_results(path: str, results: dict, markdown=None) -> None:
    """Write ``results`` to ``path`` and, given ``markdown(results)``, its
    table next to it (``.md``), both atomically."""
    from mmext.utils.fileio import atomic_write
    with atomic_write(path, 'w', force=True) as f:
        json.dump(results, f, indent=1)
    if markdown is not None:
        with atomic_write(osp.splitext(path)[0] + '.md', 'w',
                          force=True) as f:
            f.write(markdown(results))
