"""Run under `torchrun --nproc_per_node=2`: one optimiser step of grpo.policy_update on this rank's half of a
fixed 8-completion batch (groups never span ranks), micro-batched, for each loss aggregation and for GSPO's ratio
and rows left out by dynamic sampling, under DDP and under FSDP. Rank 0 writes the weights after the step, whether
both ranks hold the same weights, how often gradients were all-reduced (DDP) or reduce-scattered (FSDP: once per
FSDP unit and step), and the batch std of rewards and the mean of metrics split over the ranks."""
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
import grpo  # noqa: E402
from conftest import random_batch, tiny_model  # noqa: E402


def half_batch(batch, rank: int, world: int):
    rows = slice(rank * len(batch.ids) // world, (rank + 1) * len(batch.ids) // world)
    return grpo.Batch(**{k: None if v is None else v[rows] for k, v in vars(batch).items()})


def counting_allreduce(calls: list, bucket):
    """DDP's default gradient hook (all-reduce, then divide by the number of ranks), counting its calls."""
    calls.append(bucket.index())
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(
        lambda fut: fut.value()[0] / dist.get_world_size())


# Each loss aggregation; GSPO's sequence-level ratio; rows masked out whole, as dynamic sampling and
# --mask-truncated leave them; CISPO and SAPO; the off-policy sequence mask and the top-entropy token mask, with the
# rollout correction.
VARIANTS = {agg: {"loss_agg": agg} for agg in grpo.LOSS_AGG} | {
    "gspo": {"loss_agg": "grpo", "importance_sampling": "sequence"},
    "dropped": {"loss_agg": "grpo", "kl_estimator": "k2"},
    "cispo": {"loss_agg": "token_mean", "surrogate": "cispo"},
    "sapo": {"loss_agg": "grpo", "surrogate": "sapo", "importance_sampling": "sequence"},
    "masks": {"loss_agg": "dr_grpo", "off_policy_mask": 0.0, "rollout_correction": "token_truncate",
              "rollout_max": 1.5}}
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.5, 0.0])


def variant_batch(name: str) -> grpo.Batch:
    batch = random_batch(64, rows=8)
    if name == "dropped":
        batch.mask[[0, 1, 2, 3, 6]] = 0  # all of rank 0's half, and one row of rank 1's
    if name == "masks":
        batch.entropy_mask = torch.rand(batch.mask.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    return batch


def wrapped(fsdp: bool, calls: list):
    """The tiny model under DDP or sharded by grpo.shard, its gradient collectives counted into calls."""
    if not fsdp:
        model = DDP(tiny_model(vocab_size=64, seed=3))
        model.register_comm_hook(calls, counting_allreduce)
        return model
    model = grpo.shard(tiny_model(vocab_size=64, seed=3))
    for unit in model.modules():
        if isinstance(unit, FSDPModule):  # the hook runs after each unit's reduce-scatter
            unit.set_all_reduce_hook(lambda reduced: calls.append(len(reduced)))
    return model


def update(name: str, micro_batch: int, rank: int, world: int, fsdp: bool) -> tuple[torch.Tensor, list]:
    """This rank's weights (whole) after one SGD step (lr 1) on its half of the batch, and the gradient collectives."""
    batch, calls = variant_batch(name), []
    model = wrapped(fsdp, calls)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    cfg = grpo.Config(micro_batch=micro_batch, beta=0.04, max_new_tokens=batch.mask.shape[1], **VARIANTS[name])
    grpo.policy_update(model, opt, half_batch(batch, rank, world), cfg)
    return torch.cat([(p.full_tensor() if fsdp else p).detach().flatten() for p in model.parameters()]), calls


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    half = REWARDS[rank * 4:(rank + 1) * 4]
    results = {"global_std": grpo.global_std(half), "means": grpo.mean_over_ranks({"x": rank + 1.0, "y": 4.0 * rank}),
               "quantile": grpo.global_quantile(REWARDS[:3] if rank == 0 else REWARDS[3:], 0.7)}  # uneven halves
    for kind in ("ddp", "fsdp"):
        _, one_pass_calls = update("grpo", 4, rank, world, kind == "fsdp")  # 4 rows per rank: one micro-batch
        results[kind] = {"one_pass_calls": len(one_pass_calls)}
        for name in VARIANTS:
            weights, calls = update(name, 2, rank, world, kind == "fsdp")  # two micro-batches per rank
            gathered = [torch.zeros_like(weights) for _ in range(world)]
            dist.all_gather(gathered, weights)
            results[kind][name] = {"weights": weights, "calls": len(calls),
                                   "same_on_all_ranks": all(torch.equal(g, weights) for g in gathered)}
    if rank == 0:
        torch.save(results, out)
    dist.barrier()  # leave together: a rank that tears gloo down while the other still works can abort the job
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
