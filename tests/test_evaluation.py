"""Evaluation (greedy pass@1, pass@1 over k samples, cons@k), samples, eval-only mode and the curves plot."""
import json
import shutil
import sys

import pytest

import grpo
from grpo import RECHECK, majority_vote
from rewards import accuracy_reward


def answer(x):
    return f"<think>w</think><answer>{x}</answer>"


@pytest.mark.parametrize("completions, gold, expected", [
    ([answer(5), answer(7), answer(5)], "5", 1.0),
    ([answer(7), answer(5), answer(7)], "5", 0.0),
    ([answer("5.0"), answer(7), answer("10/2")], "5", 1.0),  # 5.0 and 10/2 are one answer by value
    ([answer(7), answer(5)], "5", 0.0),  # a tie goes to the first seen
    (["no tags", "<think>5</think>"], "5", 0.0),
    (["no tags", answer(5)], "#### 5", 1.0),  # completions without an answer do not vote
    ([answer("x+2"), answer("x + 1"), answer("\\boxed{x+1}")], "x+1", 1.0),  # one answer, however written
])
def test_majority_vote(completions, gold, expected):
    accuracies = [accuracy_reward(c, answer=gold) for c in completions]
    assert majority_vote(completions, accuracies) == expected


@pytest.mark.parametrize("text, found", [("Wait, 3 * 4 is 12", True), ("let me check: yes", True),
                                         ("I verify it", True), ("waiter", False), ("12 + 3 = 15", False)])
def test_recheck_words(text, found):
    assert bool(RECHECK.search(text)) == found


def rows_file(tmp_path, n=4):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(n)))
    return str(path)


def test_eval_only_appends_one_line_to_eval_jsonl_and_leaves_the_training_logs(model_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.jsonl").write_text('{"step": 1}\n')  # a training run's log, to be left alone
    grpo.main(["--model", model_dir, "--eval-only", "--eval-data", rows_file(tmp_path), "--eval-k", "3",
               "--max-new-tokens", "6", "--out", str(tmp_path / "out")])
    (line,) = [json.loads(x) for x in open(tmp_path / "out" / "eval.jsonl")]
    assert set(line) == {"step", "model", "eval/greedy_pass@1", "eval/pass@1_k3", "eval/cons@3", "eval/format",
                         "eval/length_mean", "eval/seconds"}
    assert line["step"] == 0 and line["model"] == model_dir and 0 < line["eval/length_mean"] <= 6
    assert (tmp_path / "out" / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert not (tmp_path / "out" / "model.safetensors").exists()  # eval-only writes no checkpoint


def test_training_run_writes_samples_evals_and_curves(model_dir, tmp_path, capsys):
    data = rows_file(tmp_path)
    grpo.main(["--model", model_dir, "--data", data, "--eval-data", data, "--eval-every", "2", "--eval-k", "2",
               "--steps", "3", "--G", "2", "--prompts-per-step", "2", "--max-new-tokens", "5",
               "--samples-every", "2", "--out", str(tmp_path / "out")])
    lines = [json.loads(x) for x in open(tmp_path / "out" / "metrics.jsonl")]
    assert [m["step"] for m in lines if "eval/format" in m] == [0, 2, 3]  # before, every 2 steps, after
    assert all(0 <= m["recheck"] <= 1 for m in lines if "reward" in m)
    samples = [json.loads(x) for x in open(tmp_path / "out" / "samples.jsonl")]
    assert {s["step"] for s in samples} == {2} and {"prompt", "completion", "reward", "answer"} <= set(samples[0])
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "before   after" in capsys.readouterr().out


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5, "accuracy": 0.2,
                                                        "length_mean": 9.0}) + "\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    grpo.plot_curves(str(tmp_path))
    assert "pip install matplotlib" in capsys.readouterr().out and not (tmp_path / "curves.png").exists()


def test_eval_only_logs_the_step_a_checkpoint_was_saved_at(model_dir, tmp_path):
    checkpoint = tmp_path / "out" / "checkpoint-7"
    grpo.AutoModelForCausalLM.from_pretrained(model_dir).save_pretrained(checkpoint)
    grpo.AutoTokenizer.from_pretrained(model_dir).save_pretrained(checkpoint)
    grpo.main(["--model", str(checkpoint), "--eval-only", "--eval-data", rows_file(tmp_path, 1), "--eval-k", "1",
               "--max-new-tokens", "2", "--out", str(tmp_path / "eval")])
    assert json.loads(open(tmp_path / "eval" / "eval.jsonl").read())["step"] == 7


def test_eval_only_of_a_run_takes_its_template_and_generation_settings(model_dir, tmp_path, monkeypatch, capsys):
    """Issue 32: a run trained in the chat template was evaluated in R1-Zero's, and with the default budget."""
    shutil.copytree(model_dir, tmp_path / "chat-model")
    tokenizer = grpo.AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}Assistant:"
    tokenizer.save_pretrained(tmp_path / "chat-model")
    data, out = rows_file(tmp_path), tmp_path / "out"
    grpo.main(["--model", str(tmp_path / "chat-model"), "--data", data, "--template", "chat", "--steps", "1",
               "--G", "2", "--prompts-per-step", "2", "--max-new-tokens", "3", "--save-every", "1", "--out", str(out)])
    templates, prompt_ids = [], grpo.prompt_ids
    monkeypatch.setattr(grpo, "prompt_ids", lambda *args: templates.append(args[2]) or prompt_ids(*args))
    for model in (out, out / "checkpoint-1"):  # a run's output, or one of its checkpoints
        capsys.readouterr()
        grpo.main(["--model", str(model), "--eval-only", "--eval-data", data, "--eval-k", "2", "--out", str(out)])
        assert (f"--eval-only --model {model}: its run's template and generation settings, but those given: --template "
                "chat --max-prompt-length 1024 --max-new-tokens 3 --eval-k 2 ") in capsys.readouterr().out
    assert set(templates) == {"chat"} and all(json.loads(x)["eval/length_mean"] <= 3 for x in open(out / "eval.jsonl"))
    assert grpo.parse_config(["--model", str(out), "--eval-only", "--eval-data", data, "--template", "r1_zero"]
                             ).template == "r1_zero"  # a flag says otherwise
