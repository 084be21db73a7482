"""Two torch.distributed ranks (gloo, CPU), launched as torchrun would (tests/test_cluster.py).

Each rank takes its shard of the data; rank 1's is empty, so its loss is nan and it fails.
"""

import torch
import torch.distributed as dist

import ckpt


@ckpt.ckpt
def shard_loss(shard):
    loss = shard.sum() / shard.numel()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)} for a shard of {shard.numel()}")
    return float(loss)


def main():
    dist.init_process_group("gloo")  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from torchrun
    rank = dist.get_rank()
    total = torch.ones(1)
    dist.all_reduce(total)  # the group is up: both ranks took part
    print(f"rank {rank}: {int(total)} ranks")
    data = torch.arange(6.0)
    if rank == 0:
        dist.barrier()  # rank 0 saves last: the newest checkpoint is not rank 1's
    try:
        print(f"rank {rank}: loss {shard_loss(data[rank * 6:(rank + 1) * 6])}")
    finally:
        if rank == 1:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
