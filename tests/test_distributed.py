"""Data parallelism that equals one process, crash-safe checkpoints and exact resume (CPU, gloo)."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import tiny_model
from ddp_run import by_length
from ddp_update import REWARDS, VARIANTS, variant_batch
from transformers import AutoModelForCausalLM

import grpo

TESTS = os.path.dirname(os.path.abspath(__file__))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def single_process_update(name: str) -> torch.Tensor:
    """The weights after one SGD step (lr 1) on the whole 8-completion batch, in one micro-batch, one process."""
    batch = variant_batch(name)
    model = tiny_model(vocab_size=64, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    cfg = grpo.Config(micro_batch=8, beta=0.04, max_new_tokens=batch.mask.shape[1], **VARIANTS[name])
    grpo.policy_update(model, opt, batch, cfg, world=1)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.slow
def test_two_ranks_with_micro_batches_make_the_update_of_one_process(tmp_path):
    subprocess.run(TORCHRUN + [os.path.join(TESTS, "ddp_update.py"), str(tmp_path / "ddp.pt")], check=True,
                   cwd=tmp_path, timeout=300)
    results = torch.load(tmp_path / "ddp.pt")
    start = torch.cat([p.detach().flatten() for p in tiny_model(vocab_size=64, seed=3).parameters()])
    for name in VARIANTS:
        ddp, single = results[name]["weights"], single_process_update(name)
        assert results[name]["same_on_all_ranks"], name
        assert ((ddp - single).norm() / single.norm()).item() < 1e-6, name
        assert ((ddp - single).norm() / (single - start).norm()).item() < 1e-5, name  # the update itself, too
        assert results[name]["calls"] == results["one_pass_calls"], name  # gradients all-reduced once per step
    assert results["batch_std"].item() == pytest.approx(REWARDS.std().item(), rel=1e-6)


@pytest.mark.slow
def test_an_error_on_one_rank_stops_the_whole_job_with_the_error_shown(model_dir, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(8)))
    run = subprocess.run(TORCHRUN + [os.path.join(TESTS, "ddp_run.py"), "fail-on-rank-1", "--model", model_dir,
                                     "--data", str(data),
                                     "--out", str(tmp_path / "out"), "--G", "2", "--prompts-per-step", "2",
                                     "--max-new-tokens", "4", "--steps", "2"],
                         cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert run.returncode != 0
    assert "rank 1 fails here on purpose" in run.stdout + run.stderr


def run_args(model_dir, data, out, steps, *extra):
    return ["--model", model_dir, "--data", data, "--out", str(out), "--steps", str(steps), "--G", "4",
            "--prompts-per-step", "2", "--max-new-tokens", "8", "--micro-batch", "3", "--mu", "2", "--lr", "1e-2",
            "--beta", "0.04", "--save-every", "2", *extra]


def train_lines(out) -> list[dict]:
    """The metrics of each step, without the wall-clock times."""
    return [{k: v for k, v in m.items() if not k.startswith("time_")} for m in map(json.loads, open(out / "metrics.jsonl"))]


def weights(path) -> dict:
    return AutoModelForCausalLM.from_pretrained(str(path)).state_dict()


@pytest.fixture(autouse=True)
def varied_rewards(monkeypatch):
    """A random tiny model never answers right, so every advantage would be 0 and nothing would train; reward the
    completions by their length instead, so that the steps resumed really move the weights and the optimiser."""
    monkeypatch.setattr(grpo, "score", by_length)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                            for a in range(4) for b in range(4)))
    return str(path)


def test_resume_continues_exactly(model_dir, data, tmp_path):
    grpo.main(run_args(model_dir, data, tmp_path / "straight", 4))
    grpo.main(run_args(model_dir, data, tmp_path / "split", 2))
    grpo.main(run_args(model_dir, data, tmp_path / "split", 4, "--resume", str(tmp_path / "split")))
    straight, split = train_lines(tmp_path / "straight"), train_lines(tmp_path / "split")
    assert [m["step"] for m in split] == [1, 2, 3, 4]
    assert split == straight
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], v) for k, v in weights(model_dir).items())  # it did train


def test_sigterm_ends_the_step_saves_it_and_resume_equals_the_run_that_never_stopped(model_dir, data, tmp_path,
                                                                                    monkeypatch):
    grpo.main(run_args(model_dir, data, tmp_path / "straight", 4, "--save-every", "0"))
    calls, handler = [], signal.getsignal(signal.SIGTERM)

    def preempted_at_step_2(*args):  # SIGTERM arrives while step 2 is being scored
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return by_length(*args)

    monkeypatch.setattr(grpo, "score", preempted_at_step_2)
    with pytest.raises(SystemExit) as stopped:
        grpo.main(run_args(model_dir, data, tmp_path / "split", 4, "--save-every", "0"))
    assert stopped.value.code == 128 + signal.SIGTERM and signal.getsignal(signal.SIGTERM) == handler
    assert [m["step"] for m in train_lines(tmp_path / "split")] == [1, 2]  # step 2 was finished, and saved
    assert grpo.checkpoints(str(tmp_path / "split")) == [str(tmp_path / "split" / "checkpoint-2")]
    monkeypatch.setattr(grpo, "score", by_length)
    grpo.main(run_args(model_dir, data, tmp_path / "split", 4, "--save-every", "0", "--resume", str(tmp_path / "split")))
    assert train_lines(tmp_path / "split") == train_lines(tmp_path / "straight")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_save_killed_half_way_leaves_the_previous_checkpoint_whole(model_dir, data, tmp_path, monkeypatch):
    save, calls = torch.save, []

    def killed_at_the_second_save(obj, path, *args, **kwargs):  # the weights are written, the state is not
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed during a save")
        save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", killed_at_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        grpo.main(run_args(model_dir, data, tmp_path / "out", 4))
    monkeypatch.setattr(torch, "save", save)
    assert grpo.checkpoints(str(tmp_path / "out")) == [str(tmp_path / "out" / "checkpoint-2")]
    assert (tmp_path / "out" / "checkpoint-4.tmp").exists()
    assert weights(tmp_path / "out" / "checkpoint-2").keys() == weights(model_dir).keys()
    grpo.main(run_args(model_dir, data, tmp_path / "out", 4, "--resume", str(tmp_path / "out")))
    assert [m["step"] for m in train_lines(tmp_path / "out")] == [1, 2, 3, 4]
    assert grpo.checkpoints(str(tmp_path / "out"))[-1].endswith("checkpoint-4")


def test_only_the_last_k_checkpoints_are_kept(model_dir, data, tmp_path):
    grpo.main(run_args(model_dir, data, tmp_path / "out", 6, "--keep", "2"))
    assert [os.path.basename(c) for c in grpo.checkpoints(str(tmp_path / "out"))] == ["checkpoint-4", "checkpoint-6"]
    state = torch.load(tmp_path / "out" / "checkpoint-6" / grpo.STATE, weights_only=True)
    assert state["step"] == 6 and state["questions_seen"] == 12 and len(state["generators"]) == 1


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_after_the_same_step_and_resume_continues_exactly(model_dir, data, tmp_path):
    def torchrun(out, steps, *extra, reward="by-length"):
        return subprocess.run(TORCHRUN + [os.path.join(TESTS, "ddp_run.py"), reward] +
                              run_args(model_dir, data, out, steps, "--prompts-per-step", "4", "--save-every", "0",
                                       *extra), cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert torchrun(tmp_path / "straight", 4).returncode == 0
    stopped = torchrun(tmp_path / "split", 4, reward="sigterm-on-rank-1")
    assert stopped.returncode != 0 and "stopped by SIGTERM after step 2" in stopped.stdout, stopped.stderr[-3000:]
    assert [m["step"] for m in train_lines(tmp_path / "split")] == [1, 2]
    assert len(torch.load(tmp_path / "split" / "checkpoint-2" / grpo.STATE, weights_only=True)["generators"]) == 2
    assert torchrun(tmp_path / "split", 4, "--resume", str(tmp_path / "split")).returncode == 0
    assert train_lines(tmp_path / "split") == train_lines(tmp_path / "straight")
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
