"""The R1-Zero template, format reward and math accuracy reward."""
import pytest

from rewards import TEMPLATE, accuracy_reward, format_reward, parse_number, r1_zero_prompt


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
