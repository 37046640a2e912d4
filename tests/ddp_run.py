"""`torchrun --nproc_per_node=2 tests/ddp_run.py REWARD grpo.py-flags...`: grpo.py under torchrun with its score
replaced. REWARD `fail-on-rank-1`: rank 1 raises while scoring, as a reward on a bad row would, and the whole job
must stop with that error shown rather than hang in an all-reduce. REWARD `by-length`: rewards that vary for a
random tiny model (which never answers right), so that a short run really trains. REWARD `math-verify`: the
real score, after checking that math-verify (whose timer is a signal, set only from a main thread) judges a
non-numeric answer on this rank. REWARD `sigterm-on-rank-1`: by-length, and rank 1 alone gets SIGTERM at step 2.
REWARD `signal-on-rank-1`: every reward 0 on rank 0 and varied on rank 1, so that only rank 1 has a signal and both
must still run the loss passes together."""
import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import grpo  # noqa: E402


def fail_on_rank_1(completions, rows, G, cfg, lengths):
    if os.environ["RANK"] == "1":
        raise RuntimeError("rank 1 fails here on purpose")
    return by_length(completions, rows, G, cfg, lengths)


def by_length(completions, rows, G, cfg, lengths):
    r = torch.tensor([float(len(c) % 3) for c in completions])
    return {"reward": r, "accuracy": r / 2, "format": r / 2}


def sigterm_on_rank_1_at_step_2(completions, rows, G, cfg, lengths):
    """Rank 1 alone is sent SIGTERM while it scores step 2, as when one node is preempted."""
    CALLS.append(1)
    if os.environ["RANK"] == "1" and len(CALLS) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return by_length(completions, rows, G, cfg, lengths)


CALLS = []


def signal_on_rank_1(completions, rows, G, cfg, lengths):
    r = torch.arange(len(completions)).float() % 2 * int(os.environ["RANK"])  # rank 0: all 0, no signal at all
    return {"reward": r, "accuracy": r, "format": r}


def math_verify_then_score(completions, rows, G, cfg, lengths):
    judged = grpo.accuracy_rewards(["<answer>1 + x</answer>"], [{"task": "math", "answer": "x+1", "prompt": "p"}])
    if judged != [1.0]:
        raise RuntimeError(f"math-verify did not judge under torchrun: {judged}")
    return score(completions, rows, G, cfg, lengths)


score = grpo.score

if __name__ == "__main__":
    grpo.score = {"fail-on-rank-1": fail_on_rank_1, "by-length": by_length, "math-verify": math_verify_then_score,
                  "sigterm-on-rank-1": sigterm_on_rank_1_at_step_2, "signal-on-rank-1": signal_on_rank_1}[sys.argv[1]]
    grpo.main(sys.argv[2:])
