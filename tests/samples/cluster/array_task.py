"""One task of a Slurm job array: SLURM_ARRAY_TASK_ID picks its chunk (tests/test_cluster.py)."""

import os

import ckpt

CHUNKS = {"2": "1,2,3", "3": "4,x,6"}


@ckpt.ckpt
def parse_chunk(text):
    return sum(int(field) for field in text.split(","))


if __name__ == "__main__":
    print(parse_chunk(CHUNKS[os.environ["SLURM_ARRAY_TASK_ID"]]))
