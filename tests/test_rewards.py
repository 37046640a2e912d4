"""The R1-Zero template, the format reward, the math and countdown accuracy rewards and the dataset rows (the
code reward and its sandbox: test_sandbox.py)."""
import os
import random
import re
import signal
import sys
import threading

import pytest

import rewards
from rewards import (TAGS, TEMPLATE, accuracy_reward, accuracy_rewards, countdown_prompt, countdown_reward,
                     extract_answer, format_reward, last_boxed, math_verify_equal, parse_number, r1_zero_prompt,
                     same_answer, to_row, unbox)


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


# The regular expressions the linear format check and answer extraction replaced: they backtracked for seconds on
# long near-misses, but on short strings they are the reference the new code must agree with.
OLD_FORMAT = re.compile(r"\s*<think>.*\S.*</think>\s*<answer>.*\S.*</answer>\s*", re.DOTALL)
OLD_ANSWER, OLD_THINKING = (re.compile(r"<answer>(.*?)</answer>", re.DOTALL),
                            re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL))
PIECES = TAGS * 3 + ("", " ", "\n", "\u00a0", "\u2003", "a", "5", "<", ">", "/", "think", "answer", "<answer")


def random_completions(n: int, seed: int = 0):
    """Short strings made of tags, whitespace (Unicode's too) and near-tags: most near-misses, some well formed."""
    rng = random.Random(seed)
    well_formed = [" ", "<think>", "a", "</think>", "\n", "<answer>", "5", "</answer>", "\u2003"]
    for _ in range(n):
        pieces = list(well_formed)
        for _ in range(rng.randint(0, 3)):  # a few edits of a well-formed completion
            i = rng.randrange(len(pieces))
            pieces[i:i + rng.randint(0, 1)] = [rng.choice(PIECES)] * rng.randint(0, 2)
        yield "".join(pieces)


def test_format_reward_gives_the_verdicts_of_the_regex_it_replaced():
    verdicts = []
    for completion in random_completions(20000):
        old = float(all(completion.count(t) == 1 for t in TAGS) and OLD_FORMAT.fullmatch(completion) is not None)
        assert format_reward(completion) == old, repr(completion)
        verdicts.append(old)
    assert 1000 < sum(verdicts) < 19000  # both verdicts were tried many times


def test_extract_answer_gives_the_answers_of_the_regexes_it_replaced():
    for completion in random_completions(20000, seed=1):
        found = OLD_ANSWER.findall(OLD_THINKING.sub("", completion))
        assert extract_answer(completion) == (found[0].strip() if len(found) == 1 else None), repr(completion)


N = 64 * 1024  # R1-style completions run to 8k tokens and more; 64k characters of one shape is what a step meets


@pytest.mark.parametrize("completion, expected", [
    ("<think>" + "a" * N + "</think><answer>5</answer>", 1.0),
    ("<think>a</think>" + " " * N + "<answer>5</answer>" + "\n" * N, 1.0),
    ("<think>a</think><answer>5</answer>" + "x" * N, 0.0),  # text after </answer>: the common case early on
    ("<think>a</think><answer>" + " " * N + "</answer>", 0.0),  # a whitespace-only answer
    ("<think>" + " " * N + "</think><answer>5</answer>", 0.0),
    ("<think>a" + "<think>" * (N // 7) + "</think><answer>5</answer>", 0.0),
    ("<think>" + "a" * N, 0.0), ("<answer>" * (N // 8), 0.0), ("</think><think>" * (N // 15), 0.0),
])
def test_format_verdicts_on_64k_completions(completion, expected):
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


# Mixed numbers and the dressing real models put around a number; each wrong answer next to them must stay wrong.
@pytest.mark.parametrize("predicted, gold, expected", [
    ("12.6", "12\\frac{3}{5}", 1.0), ("24.6", "12\\frac{3}{5}", 0.0), ("63/5", "12 \\frac 35", 1.0),
    ("12\\dfrac{3}{5}", "12.6", 1.0), ("12 3/5", "12.6", 1.0), ("-2\\frac{1}{2}", "-2.5", 1.0),
    ("-2\\frac{1}{2}", "-1.5", 0.0), ("2\\frac12", "2.5", 1.0), ("1.5\\frac{1}{2}", "2", 0.0),
    ("\\(18\\)", "18", 1.0), ("\\[18\\]", "18", 1.0), ("**18**", "18", 1.0), ("$\\boxed{18}$", "18", 1.0),
    ("70{,}000", "70000", 1.0), ("18^\\circ", "18", 1.0), ("18^{\\circ}", "18", 1.0), ("18°", "18", 1.0),
    ("18 °C", "18", 1.0), ("x = 18", "18", 1.0), ("\\boxed{x=18}", "18", 1.0),
    ("9 (apples)", "9", 1.0), ("9", "9 (apples)", 1.0), ("9 (or 10)", "9", 0.0),
    ("17", "18", 0.0), ("19", "18", 0.0), ("180", "18", 0.0), ("1.8", "18", 0.0), ("18 19", "18", 0.0),
    ("18, 19", "18", 0.0), ("18 or 19", "18", 0.0), ("about 18", "18", 0.0), ("18 million", "18", 0.0),
    ("\\(18\\) or \\(19\\)", "18", 0.0), ("**18** or **19**", "18", 0.0), ("1800%", "18", 0.0), ("2**3", "23", 0.0),
    ("12\\frac{3}{5}", "63", 0.0), ("12 3", "12.6", 0.0),
])
def test_mixed_numbers_and_dressed_numbers(predicted, gold, expected):
    assert accuracy_reward(answer(predicted), answer=gold) == expected


@pytest.mark.parametrize("predicted", [
    "5 " + "a" * N + "1", "1" + " " * N + "x", "\\boxed{" * (N // 7) + "5" + "}" * (N // 7), "1" * N + "x",
    "5 " + "a b " * (N // 4) + "1", "\\frac{" * (N // 6), "(" * N + "5", "\\(" * (N // 2) + "18",
])
def test_long_answers_are_read_in_linear_time_and_score_0(predicted):
    """Each of these backtracked for minutes (the unit after a number, whitespace runs) or for seconds (nested
    boxes) before the patterns were made linear. Milliseconds now: the deadline only turns a hang into a failure."""
    def too_slow(signum, frame):
        raise TimeoutError("a quadratic pattern is back")
    signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, 10)
    try:
        assert accuracy_reward(answer(predicted), answer="5", math_verify=False) == 0.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# Equal answers that are not one number, modelled on MATH, gaokao and college-math gold answers: our own checker
# compares them as text and misses most; math-verify reads them as math.
EQUIVALENT = [
    ("\\sqrt{2}", "\\sqrt 2"), ("2\\sqrt{3}", "2 \\sqrt 3"), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("3\\sqrt{2}", "\\sqrt{18}"),
    ("\\frac{7\\pi}{3}", "\\dfrac{7}{3}\\pi"), ("\\frac{2}{3}\\pi", "\\frac{2\\pi}{3}"), ("2\\pi", "2 \\pi"),
    ("\\frac{\\pi}{4}", "\\pi/4"), ("x^2+2x+1", "1+2x+x^2"),
    ("3x-2", "-2+3x"), ("a+b", "b+a"), ("1, 2, 3", "3, 2, 1"), ("-2, 5", "5, -2"), ("y=2x+3", "y=3+2x"),
    ("(1,2)", "(1, 2)"), ("[0,\\infty)", "[0, \\infty)"), ("(-\\infty,3]", "(-\\infty, 3]"),
    ("(-\\infty,-1)\\cup(2,\\infty)", "(-\\infty, -1) \\cup (2, \\infty)"), ("\\text{(C)}", "C"),
    ("\\text{even}", "even"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"), ("2^{10}", "1024"),
    ("1+2i", "2i+1"), ("3-4i", "-4i+3"), ("\\frac{x+1}{2}", "\\frac{1+x}{2}"), ("\\frac{a}{b}", "a/b"),
    ("\\log_2 5", "\\log_{2}5"), ("\\{1,2\\}", "\\{2,1\\}"), ("(3,-1)", "(3, -1)"),
    ("\\frac{\\pi}{2}", "\\dfrac{\\pi}{2}"),
    ("\\frac{1}{2}x", "\\frac{x}{2}"), ("e^{2}", "e^2"), ("\\sqrt{5}-1", "-1+\\sqrt{5}"), ("x^3-8", "(x-2)(x^2+2x+4)"),
    ("\\frac{3\\sqrt{3}}{4}", "\\frac{3}{4}\\sqrt{3}"), ("\\frac{1}{x}", "x^{-1}"), ("2x+y", "y+2x"),
    ("\\left( 2, \\frac{1}{2} \\right)", "(2, 1/2)"), ("-\\frac{\\sqrt{3}}{3}", "-\\frac{1}{\\sqrt{3}}"),
    ("5\\sqrt{2}", "\\sqrt{50}"), ("\\frac{9}{4}\\pi", "2.25\\pi"), ("a^2-b^2", "(a+b)(a-b)"), ("\\cos x", "\\cos(x)"),
    ("\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}"), ("k \\neq 1", "k\\ne 1"), ("x > 3", "3 < x"), ("x=5", "5"),
]
# Unequal answers, hedges among them, that neither checker may accept.
UNEQUAL = [
    ("\\sqrt{2}", "\\sqrt{3}"), ("x^2+2x+1", "x^2+2x+2"), ("(1,2)", "[1,2]"), ("1, 2, 3", "1, 2"), ("x=5", "x=6"),
    ("\\frac{2}{3}\\pi", "\\frac{3}{2}\\pi"), ("(3,-1)", "(-1,3)"), ("x+1", "x+1 or x+2"), ("\\text{(C)}", "D"),
    ("\\sqrt{2}", "\\sqrt{2} or -\\sqrt{2}"), ("2^{10}", "1000"), ("\\frac{\\pi}{4}", "0.785"), ("1+2i", "1-2i"),
    ("x > 3", "x \\geq 3"), ("\\infty", "-\\infty"), ("y=2x+3", "y=2x-3"), ("\\frac{a}{b}", "\\frac{b}{a}"),
    ("3\\sqrt{2}", "4.24"), ("(-\\infty,3]", "(-\\infty,3)"), ("\\{1,2\\}", "\\{1,2,3\\}"), ("e^2", "7.389"),
    ("\\pi", "3.14"), ("x+1", "about x+1"), ("2\\sqrt{3}", "2\\sqrt{3}, 3"), ("x^2", "x^3"), ("\\sqrt{2}", "1800%"),
]


@pytest.mark.parametrize("gold, predicted", EQUIVALENT)
def test_answers_that_are_not_one_number_are_compared_as_math(gold, predicted):
    assert accuracy_reward(answer(predicted), answer=gold) == 1.0


@pytest.mark.parametrize("gold, predicted", UNEQUAL)
def test_unequal_answers_that_are_not_one_number_score_0(gold, predicted):
    assert accuracy_reward(answer(predicted), answer=gold) == 0.0


def test_our_checker_alone_misses_most_of_them():
    assert sum(same_answer(predicted, gold) for gold, predicted in EQUIVALENT) < len(EQUIVALENT) / 2
    assert accuracy_reward(answer("(x+1)^2"), answer="x^2+2x+1", math_verify=False) == 0.0
    assert accuracy_reward(answer("(x+1)^2"), answer="x^2+2x+1") == 1.0


def test_a_gold_that_is_one_number_is_never_sent_to_math_verify(monkeypatch):
    sent = []
    monkeypatch.setattr(rewards, "math_verify_equal", lambda *args: sent.append(args) or True)
    assert accuracy_reward(answer("18 million"), answer="18") == 0.0  # math-verify would read 18 * m * i * l...
    assert accuracy_reward(answer("\\sqrt{324}"), answer="18") == 0.0
    assert accuracy_reward(answer("x+1"), answer="x + 2") == 1.0 and sent == [("x+1", "x + 2")]


def test_math_verify_reads_percent_as_dressing_too():
    assert not math_verify_equal("1800%", "18") and not math_verify_equal("1800\\%", "18")
    assert math_verify_equal("50\\%", "50")


@pytest.mark.parametrize("predicted", ["10^{10^{10}}", "(x+1)^{1000}", "x^{x^{x^{x^{x}}}} - (x+1)^{999}"])
def test_degenerate_answers_are_cut_off_and_print_nothing(predicted, capfd):
    """math-verify's own timeout is whole seconds (5 by default) and it logs each one; ours is half a second."""
    import time
    math_verify_equal.cache_clear()
    rewards.read_latex.cache_clear()
    start = time.perf_counter()
    assert accuracy_reward(answer(predicted), answer="x") == 0.0
    assert time.perf_counter() - start < 2 * rewards.MATH_VERIFY_SECONDS + 1  # a bound on hostile input, not a speed
    assert capfd.readouterr() == ("", "")


def test_the_time_limit_interrupts_math_verify(monkeypatch):
    math_verify_equal.cache_clear()
    rewards.read_latex.cache_clear()
    monkeypatch.setattr(rewards, "MATH_VERIFY_SECONDS", 1e-6)
    assert not math_verify_equal("1+2i", "2i+1")
    math_verify_equal.cache_clear()
    rewards.read_latex.cache_clear()


def test_over_long_answers_and_other_threads_get_our_checker_alone():
    assert not math_verify_equal("x + 1" + " " * rewards.MATH_VERIFY_CHARS, "1 + x")
    result = []
    thread = threading.Thread(target=lambda: result.append(accuracy_rewards([answer("1+x")], [
        {"task": "math", "answer": "x+1", "prompt": "p"}])))
    thread.start()
    thread.join()
    assert result == [[0.0]]  # math-verify's timer is a signal, which only the main thread can set


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
    ({"question": "q?", "answer": "w\n#### 5"},
     {"question": "q?", "prompt": "q?", "answer": "w\n#### 5", "task": "math"}),
    ({"problem": "p?", "solution": "so \\boxed{\\frac{1}{2}}."},
     {"problem": "p?", "solution": "so \\boxed{\\frac{1}{2}}.", "prompt": "p?", "answer": "\\frac{1}{2}",
      "task": "math"}),
    ({"prompt": "add", "tests": ["assert add(1, 1) == 2"]},
     {"prompt": "add", "tests": ["assert add(1, 1) == 2"], "task": "code"}),
    ({"nums": [1, 2], "target": 3},
     {"nums": [1, 2], "target": 3, "task": "countdown", "prompt": countdown_prompt([1, 2], 3)}),

    ({"problem": "p?", "solution": "so \\boxed{7}.", "answer": "007"},  # AIME-style: the answer field is the answer
     {"problem": "p?", "solution": "so \\boxed{7}.", "answer": "007", "prompt": "p?", "task": "math"}),
    ({"problem": "p?", "answer": "\\sqrt 2"}, {"problem": "p?", "answer": "\\sqrt 2", "prompt": "p?", "task": "math"}),
    ({"body": "Seven apples are in a basket. ", "question": "How many?", "answer": "7 (apples)"},  # ASDiv: no text lost
     {"body": "Seven apples are in a basket. ", "question": "How many?", "answer": "7 (apples)",
      "prompt": "Seven apples are in a basket. How many?", "task": "math"}),
])
def test_rows_are_read_by_their_fields(raw, row):
    assert to_row(raw) == row


@pytest.mark.parametrize("raw, task, message", [
    ({"question": "q?"}, "gsm8k", "missing field\\(s\\) answer for a gsm8k row"),
    ({"prompt": "q?", "answer": "1"}, "code", "missing field\\(s\\) tests for a code row"),
    ({"problem": "p", "solution": "no box"}, "auto", "needs an answer, or a solution with a \\\\boxed"),
    ({"problem": "p"}, "auto", "needs an answer, or a solution"),
    ({"prompt": "p", "question": "q", "answer": "1"}, "auto", "prompt and question both look like the question"),
    ({"body": ["b"], "question": "q", "answer": "1"}, "auto", "body must be a non-empty string"),
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
    from rewards import load_rows
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "examples",
                        name + ".jsonl")
    rows, bad = load_rows(path, name if name != "math" else "auto")
    assert not bad
    assert rows and all(row["task"] == task and row["prompt"] for row in rows)


# Gold answers shaped as MATH, college-math, OlympiadBench, Minerva, gaokao and ASDiv write those that are not one
# number: each must score 1 against itself, and 0 against itself with its last digit changed by one. math-verify,
# taken at its word, paid for six of these wrong answers: it reads 3:30 p.m. as 3, 52_8 as 52, 6 cm^2 as 6,
# 0.(3) repeating as 0.3 and an equation as one side of it.
REAL_SHAPED_GOLDS = [
    r"\frac{\sqrt{3}}{2}", r"2\sqrt{5}", r"\frac{7}{3}\pi", r"3\sqrt{2} - 1", r"\sqrt[3]{4}", r"\frac{1 + \sqrt{5}}{2}",
    r"(2, 5)", r"[-3, 4)", r"(-\infty, 1] \cup [3, \infty)", r"\{1, 3, 7\}", r"(3, -2)", r"(1, 2, 3)",
    r"x^2 + 6x + 9", r"2x^2 - 7x + 3", r"(x - 2)(x + 5)", r"y = 3x - 4", r"x = 7", r"x^2 - 2x + 10 = 0",
    r"x^2 + y^2 = 25", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 3 \\ -1 \end{pmatrix}",
    r"3:30 p.m.", r"52_8", r"1011_2", r"13 n, 5 d", r"5 (times)", r"12 (apples)", r"45^\circ", r"120^{\circ}",
    r"25\%", r"\$18.75", r"6 \text{ cm}^2", r"\frac{9}{4} \text{ hours}", r"4 \text{ and } 9", r"2, 3, 5",
    r"\text{(C)}", r"\textbf{(B) } 17", r"\log_2 5", r"e^{3}", r"\sin 30^\circ", r"\cos \frac{\pi}{7}",
    r"\frac{3}{8}", r"\dfrac{11}{12}", r"\cfrac{5}{6}", r"1.25 \times 10^{3}", r"-\frac{2}{9}", r"10\sqrt{2}",
    r"a = 3, b = 4", r"k = 6", r"n = 12", r"\pm 3", r"3 \pm \sqrt{2}", r"\frac{x + 1}{x - 3}", r"8 - 4i", r"2 + 3i",
    r"\infty", r"\emptyset", r"[1, 9]", r"3, 5, 7, 9", r"x > 4", r"-2 < x < 6", r"x \leq 11", r"\frac{\pi}{6}",
    r"15 \text{ m/s}", r"7 \text{ days}", r"4:1", r"2:3", r"0.\overline{3}", r"\$ 3.50", r"\textnormal{52}",
]


def last_digit_plus_one(gold: str) -> str:
    i = max(i for i, c in enumerate(gold) if c.isdigit())
    return gold[:i] + str((int(gold[i]) + 1) % 10) + gold[i + 1:]


@pytest.mark.parametrize("gold", [g for g in REAL_SHAPED_GOLDS if any(c.isdigit() for c in g)])
def test_a_gold_with_its_last_digit_changed_is_a_wrong_answer(gold):
    assert accuracy_reward(answer(gold), answer=gold) == 1.0
    assert accuracy_reward(answer(last_digit_plus_one(gold)), answer=gold) == 0.0


@pytest.mark.parametrize("gold, predicted", [
    ("3:30 p.m.", "3"), ("52_8", "52"), ("13 n, 5 d", "13"), ("x^2-2x+10=0", "x^2-2x+10=1"), ("6 \\text{ cm}^2", "6"),
    ("x+1", "x+1 or x+2"), ("4", "4 (or 5)"), ("\\{5, 13n\\}", "13 n, 5 d"), ("10:45", "2:9"), ("2t", "2"),
    ("13 n, 5 d", "13 n, 5 h"), ("3 hours 20 minutes", "6 hours 10 minutes")])
def test_math_verify_is_not_taken_where_it_reads_only_part_of_an_answer(gold, predicted):
    assert accuracy_reward(answer(predicted), answer=gold) == 0.0


@pytest.mark.parametrize("gold, predicted, score", [
    ("5 (times)", "5", 1.0), ("5 (times)", "6", 0.0), ("12 (apples)", "12 apples", 1.0),
    ("\\cfrac{5}{6}", "5/6", 1.0), ("\\textbf{52}", "52", 1.0), ("\\textnormal{52}", "52", 1.0),
    ("25%", "25", 1.0), ("25\\%", "25", 1.0), ("25%", "0.25", 0.0), ("0.25", "25%", 0.0)])
def test_dressing_and_the_percent_rule(gold, predicted, score):
    """A % is dressing, as GSM8K writes it: 25% is 25, never 0.25. Our checker alone, and with math-verify."""
    assert accuracy_reward(answer(predicted), answer=gold, math_verify=False) == score
    assert accuracy_reward(answer(predicted), answer=gold) == score


def test_an_escaped_brace_is_no_brace():
    assert last_boxed("so \\boxed{\\{1, 2\\}} in all") == "\\{1, 2\\}"
    assert unbox("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"
