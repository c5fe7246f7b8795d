#!/usr/bin/env bash
# Training on a Slurm cluster (MMSegmentation's form): one process per GPU, started by srun.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG \
#       [train.py args...]
# e.g. GPUS=4 bash tools/slurm_train.sh gpu bdl configs/bdl_gta5.py --work-dir work_dirs/bdl_gta5
# Algorithm 1 runs every stage in the same job (each splits its work over the processes); --resume continues it.
# PYTHON selects the interpreter (default: python).

set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:4}

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    ${PYTHON:-python} -u "$(dirname $0)/train.py" ${CONFIG} --launcher="slurm" ${PY_ARGS}
