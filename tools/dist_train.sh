#!/usr/bin/env bash
# Distributed training through torchrun (torch.distributed):
#   bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# NPROC processes on this node: one per GPU, or CPU processes over gloo when
# there is no GPU. Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT)
# on every node.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG NPROC [tools/train.py args ...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PY=${PY:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
exec "$PY" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
