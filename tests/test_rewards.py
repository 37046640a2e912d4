"""The R1-Zero template, the format reward, the math and countdown accuracy rewards and the dataset rows (the
code reward and its sandbox: test_sandbox.py)."""
import os
import random
import sys

import pytest

from rewards import (TEMPLATE, accuracy_reward, countdown_prompt, countdown_reward, format_reward, last_boxed,
                     math_verify_reward, parse_number, r1_zero_prompt, to_row)


def test_template_is_the_r1_zero_one_and_ends_with_assistant():
    prompt = r1_zero_prompt("What is 2 + 3?")
    assert prompt.startswith("A conversation between User and Assistant.")
    assert "<think> reasoning process here </think> <answer> answer here </answer>" in prompt
    assert prompt.endswith("User: What is 2 + 3?. Assistant:")
    assert TEMPLATE.count("{prompt}") == 1


@pytest.mark.parametrize("completion, expected", [
    ("<think>2 + 3 = 5</think><answer>5</answer>", 1.0),
    ("  <think>\nreason\n</think>\n <answer> 5 </answer>\n", 1.0),
    ("<think>a</think><answer>5</answer> trailing words", 0.0),
    ("preamble <think>a</think><answer>5</answer>", 0.0),
    ("<answer>5</answer><think>a</think>", 0.0),
    ("<think>a</think>", 0.0),
    ("<think>a</think><answer>5</answer><answer>6</answer>", 0.0),
    ("<think>a <think> b</think><answer>5</answer>", 0.0),
    ("<think>a</think> between <answer>5</answer>", 0.0),
])
def test_format_reward(completion, expected):
    assert format_reward(completion) == expected


@pytest.mark.parametrize("text, value", [
    ("42", 42), ("-7", -7), ("1,234,567", 1234567), ("3.25", 3.25), ("-0.5", -0.5), (".5", 0.5),
    ("3/4", 0.75), ("\\frac{3}{4}", 0.75), ("-\\frac{1}{2}", -0.5), ("\\dfrac{6}{4}", 1.5),
    ("\\boxed{17}", 17), ("\\boxed{\\frac{1}{3}}", 1 / 3), ("$1,200", 1200), ("\\$5", 5), ("50%", 50),
    ("12 cm", 12), ("7 apples.", 7), ("007", 7), ("18 square feet", 18), ("60 km/h", 60), ("12\\text{ cm}", 12),
    ("(5)", 5), ("\\left(5\\right)", 5), ("\u22123", -3), ("+5", 5), ("\\frac12", 0.5), ("30^\\circ", 30),
])
def test_parse_number(text, value):
    assert float(parse_number(text)) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["", "seven", "42 or 43", "1/0", "2, 3", "5 or six", "5 and a half", "3 million",
                                  "1.5 million", "5 or more", "2(3)", "(2)(3)", "\\frac{1+2}{3}"])
def test_parse_number_refuses_what_is_not_one_number(text):
    assert parse_number(text) is None


def answer(x):
    return f"<think>work</think><answer>{x}</answer>"


@pytest.mark.parametrize("completion, gold, expected", [
    (answer("72"), "Natalia sold 48/2 = 24 clips in May... #### 72", 1.0),  # GSM8K gold
    (answer("1,000"), "1000", 1.0),
    (answer("0.75"), "\\frac{3}{4}", 1.0),
    (answer("\\boxed{3/4}"), "0.75", 1.0),
    (answer("$18"), "18", 1.0),
    (answer("71"), "#### 72", 0.0),
    (answer("72 or 73"), "72", 0.0),
    ("<think>the answer is 72</think>", "72", 0.0),  # nothing in <answer>
    (answer("72") + answer("72"), "72", 0.0),  # two answers: no credit
    (answer("x + 1"), "x + 1", 1.0),  # non-numeric gold: compared as text, without spaces or LaTeX dressing
    (answer("\\boxed{x+1}"), "x + 1", 1.0),
    (answer("x + 2"), "x + 1", 0.0),
])
def test_accuracy_reward(completion, gold, expected):
    assert accuracy_reward(completion, answer=gold, prompt="ignored") == expected


def test_rewards_module_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, rewards; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("completion", [
    "<think></think><answer>5</answer>", "<think>a</think><answer> \n</answer>",  # empty blocks earn nothing
    "<THINK>a</THINK><ANSWER>5</ANSWER>", "<think>a</think><answer>5</answer><think>b</think>",
    "<think>a<answer>5</answer></think>", "<think>a</think></think><answer>5</answer>",
])
def test_format_reward_hacks_score_zero(completion):
    assert format_reward(completion) == 0.0


# The decisions on answers a policy could use to hack the math reward; README, "What the math reward accepts".
@pytest.mark.parametrize("completion, gold, expected", [
    (answer("72") + "<answer>73</answer>", "72", 0.0),  # two answers
    ("<think>a</think><answer>72</answer><answer>72</answer>", "72", 0.0),
    ("<think>so <answer>72</answer></think>", "72", 0.0),  # only while thinking
    ("<think>so <answer>70</answer></think><answer>72</answer>", "72", 1.0),  # the answer outside counts
    ("<think>so <answer>72</answer>", "72", 0.0),  # an unclosed think is all thinking
    (answer(""), "72", 0.0), (answer("  "), "", 0.0),  # empty
    (answer("The answer is 72"), "72", 0.0), (answer("72 apples"), "72", 1.0), (answer("about 72"), "72", 0.0),
    (answer("72, 73"), "72", 0.0), (answer("72 or 73"), "72", 0.0), (answer("72 to 73"), "72", 0.0),
    (answer("9" * 5000), "72", 0.0), (answer("1e99999"), "72", 0.0), (answer("1" + "0" * 4000), "1e4000", 1.0),
    (answer("1/2"), "0.5", 1.0), (answer("0.5"), "1/2", 1.0), (answer("\\frac{1}{2}"), "0.5", 1.0),
    (answer("\\dfrac12"), "0.5", 1.0), (answer("\\frac{-1}{2}"), "-0.5", 1.0), (answer("-\\tfrac{1}{2}"), "-1/2", 1.0),
    (answer("50%"), "50", 1.0), (answer("50%"), "0.5", 0.0), (answer("0.5"), "50%", 0.0),  # % is dressing
    (answer("\\boxed{\\boxed{72}}"), "72", 1.0), (answer("$\\boxed{72}$"), "72", 1.0),
    (answer("\\boxed{\\frac{1}{2}}"), "0.5", 1.0), (answer("\\boxed{70} or \\boxed{72}"), "72", 0.0),
    (answer("\\boxed{72"), "72", 0.0),
    (answer("072"), "72", 1.0), (answer("0.50"), "0.5", 1.0), (answer("00"), "0", 1.0),
    (answer("7.2e1"), "72", 1.0), (answer("7.2E+1"), "72", 1.0), (answer("7.2 \\times 10^{1}"), "72", 1.0),
    (answer("1e3"), "1,000", 1.0), (answer("1e-3"), "0.001", 1.0), (answer("7.2e1"), "7.2", 0.0),
    (answer("2"), "2x", 0.0), (answer("2y"), "2x", 0.0), (answer("2x"), "2x", 1.0), (answer("3"), "3i", 0.0),
    (answer("5 m"), "5", 1.0),  # a one-letter unit needs its space
])
def test_math_reward_hacks(completion, gold, expected):
    assert accuracy_reward(completion, answer=gold) == expected


@pytest.mark.parametrize("solution, boxed", [
    ("so $x = \\boxed{4}$.", "4"), ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"), ("no box", None),
    ("\\boxed{x^{2}", None),
])
def test_last_boxed_is_the_gold_answer_of_a_math_solution(solution, boxed):
    assert last_boxed(solution) == boxed


# Where math-verify is installed (tests/requirements.txt has it), it must agree with our checker on the answers
# both read; they differ, by design, on percentages (math-verify: 50% == 0.5) and on units and thousands commas,
# which math-verify does not read and ours does.
AGREED = [("72", "72", 1.0), ("72", "73", 0.0), ("0.5", "\\frac{1}{2}", 1.0), ("1/2", "0.5", 1.0),
          ("\\boxed{3}", "3", 1.0), ("-\\frac{3}{4}", "-0.75", 1.0), ("2.5", "5/2", 1.0), ("x+1", "x + 1", 1.0),
          ("10", "1e1", 1.0), ("0.3", "1/3", 0.0), ("\\frac{2}{3}", "0.67", 0.0)]


@pytest.mark.parametrize("predicted, gold, expected", AGREED)
def test_math_verify_agrees_with_our_checker(predicted, gold, expected):
    pytest.importorskip("math_verify")
    assert accuracy_reward(answer(predicted), answer=gold) == expected
    assert math_verify_reward(answer(predicted), answer=gold) == expected


def test_math_verify_reads_what_ours_compares_as_text():
    pytest.importorskip("math_verify")
    assert accuracy_reward(answer("(x+1)^2"), answer="x^2+2x+1") == 0.0
    assert math_verify_reward(answer("(x+1)^2"), answer="x^2+2x+1") == 1.0


# ------------------------------------------------------------------------------------------------- countdown


@pytest.mark.parametrize("expression, expected", [
    ("(25 - 5) * 4", 1.0), ("4 * (25 - 5)", 1.0), ("100 - 25 + 5", 0.0),  # wrong value
    ("(25 - 5) * 4 * 1", 0.0), ("(25 - 5) * (2 + 2)", 0.0),  # a number not given, or used twice
    ("25 * 4 - 20", 0.0), ("(25 - 5) * 4 + 0", 0.0),
    ("25 * 4 - 5 * 4", 0.0),  # 4 used twice
    ("(25 + 5) * 4", 0.0), ("25 + 5", 0.0),  # a number missing
    ("(25 - 5) * 4.0", 0.0), ("-(-25 + 5) * 4", 0.0), ("(25 - 5) ** 1 * 4", 0.0),  # not + - * / on integers
    ("__import__('os').getpid()", 0.0), ("abs(25 - 5) * 4", 0.0), ("x * 4", 0.0), ("(25 - 5) * 4; 1", 0.0),
    ("(25 - 5) * 4 / (5 - 5)", 0.0), ("(" * 500 + "4" + ")" * 500, 0.0), ("", 0.0),
])
def test_countdown_reward(expression, expected):
    assert countdown_reward(answer(expression), nums=[25, 5, 4], target=80) == expected


def test_countdown_division_is_exact():
    assert countdown_reward(answer("(7 / 3) * 3 + 1"), nums=[7, 3, 3, 1], target=8) == 1.0
    assert countdown_reward(answer("7 / 2"), nums=[7, 2], target=3) == 0.0


def test_generated_countdown_problems_are_seeded_and_solvable():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"))
    from make_countdown import countdown_problem
    problems = [countdown_problem(random.Random(3)) for _ in range(2)]
    assert problems[0] == problems[1]
    rng = random.Random(0)
    for problem in (countdown_problem(rng) for _ in range(200)):
        assert 0 < problem["target"] <= 1000 and len(problem["nums"]) in (3, 4)
        assert countdown_reward(answer(problem["solution"]), **problem) == 1.0


# -------------------------------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("raw, row", [
    ({"prompt": "1 + 1?", "answer": 2}, {"prompt": "1 + 1?", "answer": 2, "task": "math"}),
    ({"question": "q?", "answer": "w\n#### 5"}, {"question": "q?", "prompt": "q?", "answer": "w\n#### 5", "task": "math"}),
    ({"problem": "p?", "solution": "so \\boxed{\\frac{1}{2}}."},
     {"problem": "p?", "solution": "so \\boxed{\\frac{1}{2}}.", "prompt": "p?", "answer": "\\frac{1}{2}", "task": "math"}),
    ({"prompt": "add", "tests": ["assert add(1, 1) == 2"]}, {"prompt": "add", "tests": ["assert add(1, 1) == 2"], "task": "code"}),
    ({"nums": [1, 2], "target": 3}, {"nums": [1, 2], "target": 3, "task": "countdown", "prompt": countdown_prompt([1, 2], 3)}),
])
def test_rows_are_read_by_their_fields(raw, row):
    assert to_row(raw) == row


@pytest.mark.parametrize("raw, task, message", [
    ({"question": "q?"}, "gsm8k", "missing field\\(s\\) answer for a gsm8k row"),
    ({"prompt": "q?", "answer": "1"}, "code", "missing field\\(s\\) tests for a code row"),
    ({"problem": "p", "solution": "no box"}, "auto", "no \\\\boxed"),
    ({"prompt": "p", "tests": []}, "auto", "tests must be a non-empty list"),
    ({"prompt": "p", "tests": ["add(1, 1) == 2"]}, "auto", "one assert statement"),
    ({"nums": [1, "2"], "target": 3}, "auto", "nums must be a list of integers"),
    ({"nums": [1, 2], "target": 3.5}, "auto", "target an integer"),
    ({"prompt": "", "answer": "1"}, "auto", "prompt must be a non-empty string"),
    ({"prompt": "p", "answer": ""}, "auto", "answer must be a non-empty string"),
    ({"nums": [1, 2]}, "auto", "cannot tell the task from the fields \\['nums'\\]"),
    ({"prompt": "p", "answer": "1", "completion": "c"}, "auto", "may not have a field named completion"),
    ({"prompt": "p", "tests": ["assert f() == 1"], "timeout": "4"}, "auto", "timeout must be a number"),
    ({"prompt": "p", "tests": ["assert f() == 1"], "timeout": -1}, "auto", "timeout must be a number"),
    ({"prompt": "p", "tests": ["assert f() == 1"], "memory_mb": 1.5}, "auto", "memory_mb must be an integer"),
])
def test_bad_rows_say_what_is_wrong(raw, task, message):
    with pytest.raises(ValueError, match=message):
        to_row(raw, task)


@pytest.mark.parametrize("name, task", [("math", "math"), ("gsm8k", "math"), ("competition_math", "math"),
                                        ("code", "code"), ("countdown", "countdown")])
def test_the_example_files_load(name, task):
    from grpo import load_rows
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "examples", name + ".jsonl")
    rows = load_rows(path, name if name != "math" else "auto")
    assert rows and all(row["task"] == task and row["prompt"] for row in rows)
