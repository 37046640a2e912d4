"""Run under `torchrun --nproc_per_node=2` with grpo.py's flags: rank 1 fails while scoring its first samples,
as a reward on a bad row would; the whole job must stop with that error shown, not hang in an all-reduce."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import grpo  # noqa: E402

score = grpo.score


def score_or_fail(*args, **kwargs):
    if os.environ["RANK"] == "1":
        raise RuntimeError("rank 1 fails here on purpose")
    return score(*args, **kwargs)


grpo.score = score_or_fail
grpo.main()
