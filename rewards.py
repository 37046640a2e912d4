"""The R1-Zero prompt template, its rule-based rewards (DeepSeek-R1, section 2.2), and the datasets they score: each
published shape mapped onto the fields the rewards read, JSONL files read with FILE:LINE for a bad row.

A reward is plain: `(completion: str, **row) -> float`, where `row` is the dataset row: format_reward, and an
accuracy reward per task (ACCURACY): math (accuracy_reward, the final answer), multiple choice (choice_reward, the
letter), code (code_reward, the fraction of the row's tests the program passes, judged by sandbox.tests_passed) and
countdown (countdown_reward, an expression that hits a target). Nothing here imports torch: a reward can be tested
or reused on its own.
"""
import ast
import collections
import functools
import json
import logging
import os
import re
import signal
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from sandbox import BINARY, SandboxError, parse_test, require_layers, tests_passed  # noqa: F401 (grpo.py: SandboxError)

# DeepSeek-R1, Table 1. The template ends with "Assistant:", so `<think>` is part of the *completion*:
# the model must learn to open its reasoning itself, and format_reward checks that it did.
INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>."
)
TEMPLATE = INSTRUCTION + " User: {prompt}. Assistant:"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def r1_zero_prompt(prompt: str) -> str:
    """The question in the R1-Zero template, literally: "...?" becomes "...?. Assistant:", as in the paper."""
    return TEMPLATE.format(prompt=prompt.strip())


def r1_zero_messages(prompt: str) -> list[dict]:
    """The question as a chat, for an instruct model's own template: INSTRUCTION as the system message."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": prompt.strip()}]


def format_reward(completion: str, **row) -> float:
    """1 if the completion is `<think>...</think> <answer>...</answer>` and only whitespace around, each tag once
    and neither block empty (empty tags would earn the reward without any reasoning or answer). Cut at the tags with
    str.partition: linear in the length, where a regular expression backtracks on near-misses."""
    if any(completion.count(tag) != 1 for tag in TAGS):
        return 0.0
    before, _, rest = completion.partition("<think>")
    thinking, _, rest = rest.partition("</think>")
    between, _, rest = rest.partition("<answer>")
    answer, closed, after = rest.partition("</answer>")  # each tag is there once: it closes if they are in order
    if not closed or (before + between + after).strip():
        return 0.0
    return float(bool(thinking.strip() and answer.strip()))


def outside_thinking(completion: str) -> str:
    """The completion without its `<think>` blocks; an unclosed `<think>` runs to the end."""
    kept, i = [], 0
    while (start := completion.find("<think>", i)) >= 0:
        kept.append(completion[i:start])
        end = completion.find("</think>", start)
        i = len(completion) if end < 0 else end + len("</think>")
    return "".join(kept) + completion[i:]


def extract_answer(completion: str) -> str | None:
    """The content of the single `<answer>` block outside `<think>`; None if there is none or more than one.
    An answer written only while thinking does not count, and two answers are a hedge, not an answer."""
    _, _, rest = outside_thinking(completion).partition("<answer>")
    answer, closed, rest = rest.partition("</answer>")
    _, _, rest = rest.partition("<answer>")
    if not closed or "</answer>" in rest:  # a second block counts once it is closed, as a regex's findall would
        return None
    return answer.strip()


# ------------------------------------------------------------------------------------------------------- math
BRACES = re.compile(r"\\?[{}]")  # a brace, or an escaped one (`\{1, 2\}`, a set), which nests nothing


def closing_brace(text: str, i: int) -> int:
    """The index of the `}` closing the `{` just before text[i]; -1 if it is never closed."""
    depth = 1
    for brace in BRACES.finditer(text, i):
        if len(brace.group()) == 2:
            continue
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return brace.start()
    return -1


def unbox(text: str) -> str:
    r"""The answer without what wraps the whole of it: `\boxed{}` (a box in a box too), `$`, `\(...\)`, `\[...\]`
    and markdown's `**`. `\boxed{3} or \boxed{5}` stays unreadable rather than being read as 5."""
    for _ in range(4):  # each level is a pass over the text: a thousand nested boxes must not cost a thousand passes
        text = text.strip().strip("$*").removeprefix("\\(").removeprefix("\\[").strip()
        text = text.removesuffix("\\)").removesuffix("\\]").strip().strip("$*").strip()
        if not (text.startswith("\\boxed{") and closing_brace(text, 7) == len(text) - 1):
            break
        text = text[7:-1]
    return text


def last_boxed(solution: str) -> str | None:
    r"""The content of the last `\boxed{...}` of a worked solution: the gold answer of a MATH row."""
    start = solution.rfind("\\boxed{")
    end = closing_brace(solution, start + 7) if start >= 0 else -1
    return solution[start + 7:end].strip() if end >= 0 else None


# A number in plain() text (whitespace runs made single spaces): a sign, digits with optional thousands separators
# and decimals, an exponent of at most four digits (1e9999 is exact and fast; 1e999999999 would not be), optionally
# "/ number" after an optional whole part (the mixed number "12 3/5"), then at most a unit of up to three words
# ("12 cm", "18 square feet", "60 km/h"). A one-letter unit needs a space: "5 m" is 5, but "2x" and "3i" are
# algebra. Every part is delimited, so a failed match backtracks in linear time.
NUMBER = re.compile(
    r"(?:(?P<whole>[-+]?\d+) (?=\d+ ?/))?"
    r"(?P<num>[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{1,4})?)"
    r"(?: ?/ ?(?P<den>-?\d+(?:\.\d+)?))?"
    r"(?:(?: |(?=[A-Za-zµ]{2}))(?P<unit>[A-Za-zµ]+(?:(?: ?[./] ?| )[A-Za-zµ]+){0,2}))?"
)
# Words after a number that change or hedge it: "5 or 6", "5 and a half", "3 million" are not the number 5 or 3.
NOT_A_UNIT = {"or", "and", "to", "plus", "minus", "times", "half", "quarter", "third", "dozen", "hundred",
              "thousand", "million", "billion", "trillion", "more", "less", "over", "under", "about", "approximately"}


def plain(text: str) -> str:
    r"""The answer without LaTeX and currency dressing: `12\frac{3}{5}` -> `12 3/5`, `2.5 \times 10^{3}` -> `2.5e3`,
    `5 (times)` -> `5`, `70{,}000` -> `70,000`; no `$`, `%` (`50%` is 50, GSM8K's convention), degrees, or
    one pair of enclosing parentheses (`(5)` is 5, `2(3)` unreadable). Whitespace runs become one space first, so
    that no pattern here scans a run more than once."""
    text = re.sub(r"\s+", " ", unbox(text)).replace("\u2212", "-").replace("{,}", ",")
    text = re.sub(r"(\d) ?(?=\\[dtc]?frac)", r"\1 ", text)  # a mixed number: 12\frac{3}{5} is 12 + 3/5
    text = re.sub(r"\\[dtc]?frac ?(\d) ?(\d)", r"\1/\2", text)  # \frac12, \frac 35
    text = re.sub(r"\\[dtc]?frac ?\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r" ?(?:\\times|\\cdot|×) ?10\^\{?([-+]?\d+)\}?", r"e\1", text)
    text = re.sub(r"\\(?:text(?:bf|normal)?|mathrm|mbox)\{([^{}]*)\}", r" \1", text)
    text = re.sub(r"\^\{?\\circ\}?|°", " ", text)
    text = re.sub(r"\s+", " ", re.sub(r"\\left|\\right|\\[$%!,]|[$%]", "", text)).strip().rstrip(".").strip()
    text = re.sub(r"(?<=\d) ?\([A-Za-z ]+\)$", "", text)  # words in parentheses after a number: 5 (times) is 5
    text = re.sub(r"^[A-Za-z] ?= ?", "", text)  # x = 5
    return text[1:-1].strip() if re.fullmatch(r"\([^()]*\)", text) else text


def parse_number(text: str) -> Fraction | None:
    r"""An answer's exact number (`1,234`, `3/4`, `2\frac{1}{2}`, `\boxed{7}`, `$5`, `12 cm`, `1.5e3`), or None."""
    match = NUMBER.fullmatch(plain(text))
    if match is None or NOT_A_UNIT & set(re.split(r"[ ./]+", (match["unit"] or "").lower())):
        return None
    try:
        value = Fraction(match["num"].replace(",", ""))
        den = Fraction(match["den"] or 1)
        whole = Fraction(match["whole"] or 0)
    except ValueError:  # Python refuses to read integers of more than 4300 digits
        return None
    sign = -1 if (match["whole"] or "").startswith("-") else 1  # -2 1/2 is -(2 + 1/2)
    return whole + sign * value / den if den != 0 else None


def gold_answer(answer) -> str:
    """The gold answer of a row; GSM8K writes the worked solution and then `#### 42`."""
    return str(answer).split("####")[-1].strip()


def same_answer(predicted: str, gold: str) -> bool:
    r"""Numbers compare exactly (as fractions, so 0.75 == 3/4 == 7.5e-1); anything else as text without LaTeX
    dressing or spaces (so `\boxed{x + 1}` matches `x+1`). An empty answer matches nothing."""
    got, want = parse_number(predicted), parse_number(gold)
    if got is not None and want is not None:
        return got == want
    return plain_text(predicted) == plain_text(gold) != ""


def plain_text(answer: str) -> str:
    return plain(answer).replace(" ", "")


def answer_key(answer: str):
    """What answers are grouped by in a majority vote: the number, if the answer reads as one, else the text without
    LaTeX dressing or spaces (so `x + 1` and `\\boxed{x+1}` are one answer)."""
    number = parse_number(answer)
    return number if number is not None else plain_text(answer)


def accuracy_reward(completion: str, answer, math_verify: bool = True, **row) -> float:
    """1 if the completion's single `<answer>` block holds the gold answer, else 0. A gold answer that reads as one
    number is compared by our exact checker alone; any other by ours or, where installed, math-verify. A list of
    gold answers (OlympiadBench's multiple answers) needs them all, separated by commas, in any order."""
    predicted = extract_answer(completion)
    if predicted is None:
        return 0.0
    if isinstance(answer, list):
        return float(all_answers(top_level_parts(unbox(predicted)), [gold_answer(a) for a in answer], math_verify))
    return float(one_answer(predicted, gold_answer(answer), math_verify))


def one_answer(predicted: str, gold: str, math_verify: bool) -> bool:
    return same_answer(predicted, gold) or math_verify and parse_number(gold) is None and math_verify_equal(predicted,
                                                                                                         gold)


def all_answers(parts: list[str], golds: list[str], math_verify: bool) -> bool:
    """Each part matches a different gold answer, and none is left over: tried part by part, as the golds are few."""
    if len(parts) != len(golds):
        return False
    left = list(golds)
    for part in parts:
        match = next((gold for gold in left if one_answer(part, gold, math_verify)), None)
        if match is None:
            return False
        left.remove(match)
    return True


def top_level_parts(text: str) -> list[str]:
    """The text cut at its commas outside brackets and braces: `(1, 2), 3` is `(1, 2)` and `3`."""
    parts, depth, start = [], 0, 0
    for bracket in re.finditer(r"[([{]|[)\]}]|,", text):
        if bracket[0] == ",":
            if depth == 0:
                parts.append(text[start:bracket.start()])
                start = bracket.end()
        else:
            depth = max(0, depth + (1 if bracket[0] in "([{" else -1))  # [-3, 4) opens with one, closes with another
    return [part.strip() for part in parts + [text[start:]]]


def choice_reward(completion: str, answer: str, options: list[str], **row) -> float:
    """1 if the answer names the gold option by its letter: `B`, `(B)`, `B.` or `B)`, then, optionally, any text that
    names no other option's letter or is the gold option's own text (`B) 6(\\sqrt 3 + \\sqrt 2)`, and `D) Both A and B`
    where D is "Both A and B"; not `B or C`)."""
    chosen = re.fullmatch(r"\(?([A-Z])(?:[).:]\s*|\s+|$)(.*)", unbox(extract_answer(completion) or ""), re.DOTALL)
    if chosen is None or chosen[1] != answer:
        return 0.0
    others = set(string.ascii_uppercase[:len(options)]) - {answer}
    named = set(re.findall(r"\b[A-Z]\b", chosen[2]))
    return float(not (named & others) or same_answer(chosen[2], options[ord(answer) - ord("A")]))


MATH_VERIFY_CHARS = 300  # longer answers are not sent to math-verify: real ones are far shorter, and it can be slow
MATH_VERIFY_SECONDS = 0.5  # math-verify's own timeout counts whole seconds; `(x+1)^{1000}` would take 5 of them


@functools.cache
def load_math_verify():
    """The math-verify package (pip install math-verify), imported on first use; None where it is not installed."""
    try:
        import math_verify
    except ImportError:
        return None
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs each timeout and each unreadable answer
    return math_verify


class TooSlow(BaseException):
    """Raised by the alarm inside math-verify; a BaseException because math-verify catches every Exception."""


@functools.lru_cache(maxsize=1 << 14)  # a group of G answers often holds the same one many times
def math_verify_equal(predicted: str, gold: str) -> bool:
    r"""math-verify's judgement that `predicted` equals `gold` as LaTeX (`\sqrt 2` is `\sqrt{2}`, `x = 5` is 5). False
    where it is not installed, for over-long answers, after MATH_VERIFY_SECONDS and off the main thread (its timer
    is a signal). A `%` is dressing, as in ours: math-verify would read `1800%` as 18."""
    mv = load_math_verify()
    if mv is None or len(predicted) > MATH_VERIFY_CHARS or threading.current_thread() is not threading.main_thread():
        return False
    predicted, gold = (re.sub(r"\\?%", "", text) for text in (predicted, gold))
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, MATH_VERIFY_SECONDS)
            return (read_whole(predicted) and reads_soundly(gold)
                    and mv.verify(read_latex(gold), read_latex(predicted), timeout_seconds=None))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TooSlow:  # also when the alarm rang just before it was cancelled
        return False
    finally:
        signal.signal(signal.SIGALRM, previous)


def alarm(signum, frame):
    raise TooSlow


@functools.lru_cache(maxsize=1 << 14)
def read_latex(answer: str) -> list:
    """math-verify's reading of an answer, kept: parsing is most of its cost, and a gold answer meets G completions."""
    return load_math_verify().parse(f"${answer}$", parsing_timeout=None)


def read_whole(answer: str) -> bool:
    """math-verify read all of the answer: the text it matched is the answer, but for spaces and braces. It reads
    `13 n, 5 d` as 13 n and 5, or `4 (or 5)` as 4, silently."""
    read = read_latex(answer)
    return len(read) == 2 and bare_latex(read[1]) == bare_latex(answer)


def bare_latex(text: str) -> str:
    r"""LaTeX without what math-verify rewrites in the text it matched: spaces, braces, \left and \right, \dfrac and
    \cfrac (\frac), \textbf and \textnormal (\text)."""
    text = re.sub(r"\\[dtc]frac", r"\\frac", re.sub(r"\\text(?:bf|normal)", r"\\text", text))
    return re.sub(r"\s|[{}]|\\left|\\right", "", text)


@functools.lru_cache(maxsize=1 << 14)
def reads_soundly(gold: str) -> bool:
    """math-verify reads the gold whole, and tells it from the gold with any one of its digits changed: a reading
    that drops a part (`3:30 p.m.` read as 3, `52_8` as 52, `6 cm^2` as 6, an equation as one of its sides) fails
    one of those, and then its verdicts on this gold are not taken."""
    if not read_whole(gold) or ":" in gold:  # a time or a ratio: math-verify reads 10:45 as 2/9
        return False
    for digit in re.finditer(r"\d", gold):
        changed = gold[:digit.start()] + str((int(digit[0]) + 1) % 10) + gold[digit.end():]
        if load_math_verify().verify(read_latex(gold), read_latex(changed), timeout_seconds=None):
            return False
    return True


# -------------------------------------------------------------------------------------------------- countdown
# TinyZero's task: reach the target with each given number used exactly once and + - * / and parentheses.
OPERATIONS = {op: BINARY[op] for op in (ast.Add, ast.Sub, ast.Mult, ast.Div)}  # the test evaluator's, four of them


def countdown_prompt(nums: list[int], target: int) -> str:
    return (f"Using each of the numbers {nums} exactly once, with + - * / and parentheses, write an expression "
            f"that equals {target}. Give only the expression as the answer.")


def expression_value(node: ast.AST, used: list[int]) -> Fraction:
    """The exact value of an expression made only of integers, + - * / and parentheses, read from its syntax tree
    (never run); the integers it uses are appended to `used`. Anything else raises ValueError."""
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATIONS:
        return OPERATIONS[type(node.op)](expression_value(node.left, used), expression_value(node.right, used))
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    raise ValueError(f"not allowed in a countdown answer: {type(node).__name__}")


def countdown_reward(completion: str, nums: list[int], target: int, **row) -> float:
    """1 if the answer is an expression that uses each of `nums` exactly once and equals `target`, else 0."""
    expression = extract_answer(completion)
    if expression is None or len(expression) > 1000:  # a long answer is no answer, and deep nesting is slow
        return 0.0
    used = []
    try:
        value = expression_value(ast.parse(expression, mode="eval").body, used)
    except (SyntaxError, ValueError, ZeroDivisionError, MemoryError, RecursionError):
        return 0.0
    return float(sorted(used) == sorted(nums) and value == target)


# ------------------------------------------------------------------------------------------------------- code
# R1-Zero: for code, "the model's output is directly executed" against test cases. The program is hostile input:
# sandbox.py runs it confined and judges the tests itself on the data the program's values come back as, so that
# exiting early, printing "all tests passed" or returning an object with a rigged `__eq__` gains nothing.
FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def extract_program(completion: str) -> str | None:
    """The program in the `<answer>` block: its fenced code blocks if it has any, else all of it."""
    answer = extract_answer(completion)
    fenced = FENCE.findall(answer or "")
    return "\n".join(fenced) if fenced else answer


def code_reward(completion: str, tests: list[str], timeout: float = 4.0, memory_mb: int = 1024,
                test_setup_code: str = "", **row) -> float:
    """The fraction of the row's tests that the program in the answer passes, run in the sandbox (0 without one).
    `timeout` (seconds of CPU time; sandbox.exits_while_computing), `memory_mb` and the tests' setup code (run after
    the program) can be set per row."""
    program = extract_program(completion)
    return sum(tests_passed(program, tests, timeout, memory_mb, test_setup_code)) / len(tests) if program else 0.0


# The accuracy reward of each task, by the name in a row's "task" field; your own goes here too (README, "Your own
# reward"): rewards.ACCURACY["name"] = reward_function, then rows with "task": "name" get it.
ACCURACY = {"math": accuracy_reward, "choice": choice_reward, "code": code_reward, "countdown": countdown_reward}


def accuracy_rewards(completions: list[str], rows: list[dict], rewards: dict = ACCURACY, workers: int | None = None):
    """Each completion's accuracy reward against its row, by the row's task. Code rows run in parallel, each on a
    thread of a pool waiting on its sandboxed child; the rest in this one (math-verify's timer needs it). The pool
    shares the node's CPUs with the node's other ranks (torchrun's LOCAL_WORLD_SIZE): one child per CPU a node."""
    score = lambda i: rewards[rows[i].get("task", "math")](completions[i], **rows[i])  # noqa: E731
    code = [i for i, row in enumerate(rows) if row.get("task") == "code"]
    workers = workers or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    with ThreadPoolExecutor(workers) as pool:
        ran = dict(zip(code, pool.map(score, code)))
    return [ran[i] if i in ran else score(i) for i in range(len(rows))]


# --------------------------------------------------------------------------------------------------- datasets
# The fields that tell a row's dataset, tried in this order; what each becomes is in to_row and data/README.md.
FIELDS = {"code": ("prompt", "tests"), "countdown": ("nums", "target"), "competition_math": ("problem",),
          "gsm8k": ("question", "answer"), "math": ("prompt", "answer")}
QUESTION = ("prompt", "question", "problem")  # a row holds its question in one of these
CONTEXT = ("body", "context", "passage")  # text that comes before the question (ASDiv's body: "Seven apples...")
OURS = {*QUESTION, *CONTEXT, "answer", "options", "solution", "tests", "nums", "target", "task", "timeout", "memory_mb"}
LABEL = re.compile(r"(?:^|(?<=\s))\(?([A-Z])\)")  # an option's letter, as (B) or B), where a word starts (not P(X))


def field_map(text: str) -> dict[str, str]:
    """--fields `ours=theirs,...` (`question=input,answer=target`) as {theirs: ours}, or ValueError saying why not."""
    pairs = [pair.split("=") for pair in text.split(",") if pair.strip()]  # a trailing comma is no pair
    bad = next((p for p in pairs if len(p) != 2 or p[0].strip() not in OURS or not p[1].strip()), None)
    if bad or not pairs:
        raise ValueError(f"{'='.join(bad or [text])}: expected ours=theirs, ours one of {', '.join(sorted(OURS))}")
    return {theirs.strip(): ours.strip() for ours, theirs in pairs}


def our_names(raw: dict, renames: dict[str, str]) -> dict:
    """The row with its fields under our names: those --fields renames, and those that differ from ours only in case
    (SVAMP's `Question`) where no other field has the name in another case. Two fields may become one only if they
    hold the same value."""
    cases = collections.Counter(key.lower() for key in raw)
    lowered = {theirs.lower(): ours for theirs, ours in renames.items()}
    row, source = {}, {}
    for key, value in raw.items():
        lower = key.lower() if cases[key.lower()] == 1 else key  # a name used in two cases is compared exactly
        name = renames.get(key) or lowered.get(lower) or (lower if lower in OURS else key)
        if name in row and row[name] != value:
            raise ValueError(f"the fields {source[name]} and {key} are both {name}, with different values: keep one")
        row[name], source[name] = value, key
    return row


def to_row(raw: dict, task: str = "auto", renames: dict[str, str] | None = None) -> dict:
    r"""A dataset row in the fields the rewards read, with its reward's "task"; `renames` are --fields' {theirs: ours}.
    The prompt is the question (GSM8K's question, MATH's problem; two fields with the same text are one question)
    after any context (ASDiv's body) and before any options; a MATH row's answer is its `answer`, else its solution's
    last `\boxed{}`; a one-element list of answers is its element; a countdown row gets a prompt. Other fields stay:
    the rewards get them as keyword arguments. No text is dropped: a row with two different questions is refused.
    Raises ValueError saying what is wrong."""
    raw = our_names(raw, renames or {})
    if raw.get("task") not in (None, *FIELDS, *ACCURACY):
        known = ", ".join(sorted(FIELDS.keys() | ACCURACY.keys()))
        raise ValueError(f"no reward is registered for the task {raw['task']!r} (rewards.ACCURACY[{raw['task']!r}] = "
                         f"your_reward; README, 'Your own reward'); known: {known}")
    if raw.get("task") in ACCURACY.keys() - FIELDS.keys():  # a reward registered under its own name
        task = raw["task"]
    elif task == "auto":
        task = next((t for t, need in FIELDS.items() if all(f in raw for f in need)), None)
        if task is None and "prompt" not in raw:
            raise ValueError(f"cannot tell the task from the fields {sorted(raw)}: a row needs one of "
                             + ", ".join(f"{'+'.join(need)} ({t})" for t, need in FIELDS.items())
                             + "; --fields ours=theirs names yours")
        task = task or "math"
    if missing := [f for f in FIELDS.get(task, ()) if f not in raw]:
        raise ValueError(f"missing field(s) {', '.join(missing)} for a {task} row")
    if "completion" in raw:
        raise ValueError("a row may not have a field named completion: rewards take the completion by that name")
    texts = [f for f in CONTEXT + QUESTION if raw.get(f) is not None]  # a null context (OlympiadBench's) is none
    if not_text := [f for f in texts if not isinstance(raw[f], str)]:
        raise ValueError(f"{not_text[0]} must be a non-empty string, got {json.dumps(raw[not_text[0]])[:80]}")
    questions = [f for f in QUESTION if f in texts]
    if len({raw[f].strip() for f in questions}) > 1:
        raise ValueError(f"the fields {' and '.join(questions)} both look like the question, with different texts: "
                         f"keep one")
    row = dict(raw, task={"gsm8k": "math", "competition_math": "math"}.get(task, task))
    if texts:
        row["prompt"] = " ".join(dict.fromkeys(raw[f].strip() for f in texts))  # a question given twice, once
    if task == "competition_math" and "answer" not in raw:
        row["answer"] = last_boxed(str(raw.get("solution", "")))
        if row["answer"] is None:
            raise ValueError("a competition_math row needs an answer, or a solution with a \\boxed{} answer")
    if isinstance(row.get("answer"), list) and len(row["answer"]) == 1:
        row["answer"] = row["answer"][0]
    if task == "countdown":
        nums, target = raw["nums"], raw["target"]
        if not (isinstance(nums, list) and nums and all(type(n) is int for n in nums + [target])):
            raise ValueError(f"nums must be a list of integers and target an integer, got nums={nums!r}, "
                             f"target={target!r}")
        row.setdefault("prompt", countdown_prompt(nums, target))
    if task == "code":
        check_code_row(raw)
    golds = row.get("answer") if isinstance(row.get("answer"), list) else [row.get("answer")]
    if row["task"] == "math" and not (golds and all(map(gold_like, golds))):
        raise ValueError(f"answer must be a non-empty string or a number, got {json.dumps(row['answer'])[:80]}")
    if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
        raise ValueError(f"prompt must be a non-empty string: a row needs its question in {', '.join(QUESTION)}")
    if row["task"] == "choice" or row["task"] == "math" and raw.get("options") is not None:
        row.update(multiple_choice(row))
    return row


def gold_like(answer) -> bool:
    return not isinstance(answer, bool) and isinstance(answer, (str, int, float)) and bool(gold_answer(answer))


def multiple_choice(row: dict) -> dict:
    """A multiple-choice row's prompt with its options, each labelled `(A)`... unless labelled already (AQuA's `A)21`;
    SAT's one string), its gold answer as the letter (an integer is an option's 0-based index, as MMLU writes it)
    and its options' texts without their labels, for choice_reward."""
    options, gold = row.get("options"), row["answer"]
    if isinstance(options, list) and options and len(options) <= 26 and all(isinstance(o, str) for o in options):
        options = [option.strip() for option in options]
        text = "\n".join(o if LABEL.match(o) else f"({x}) {o}" for x, o in zip(string.ascii_uppercase, options))
        texts = [LABEL.sub("", o, count=1).strip() if LABEL.match(o) else o for o in options]
    elif isinstance(options, str) and (texts := labelled_options(options)):
        text = options.strip()
    else:
        raise ValueError(f"options must be a list of strings or one string of options labelled (A), (B)..., got "
                         f"{json.dumps(options)[:80]}")
    letters = string.ascii_uppercase[:len(texts)]
    letter = letters[gold] if type(gold) is int and 0 <= gold < len(letters) else str(gold).strip().strip("()")
    if letter not in letters or len(letter) != 1:
        raise ValueError(f"the answer of a multiple-choice row must be one of the letters {letters}, got "
                         f"{json.dumps(gold)}")
    return {"prompt": f"{row['prompt']}\n{text}", "answer": letter, "options": texts, "task": "choice"}


def labelled_options(text: str) -> list[str]:
    """One string of options (SAT's `(A) 2 (B) 4`) cut at its labels A, B, C... in turn: a `(C)` out of turn is text."""
    labels = []
    for label in LABEL.finditer(text):
        if len(labels) < 26 and label[1] == string.ascii_uppercase[len(labels)]:
            labels.append(label)
    return [text[a.end():b.start() if b else None].strip() for a, b in zip(labels, labels[1:] + [None])]


def needs_math_verify(row: dict) -> bool:
    """A math row with a gold answer that is not one number: math-verify compares it, where installed; else only as
    text."""
    golds = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    return row["task"] == "math" and any(parse_number(gold_answer(gold)) is None for gold in golds)


def check_code_row(raw: dict) -> None:
    if not (isinstance(raw["tests"], list) and raw["tests"] and all(isinstance(t, str) for t in raw["tests"])):
        raise ValueError("tests must be a non-empty list of assert statements (strings)")
    for test in raw["tests"]:
        parse_test(test)
    try:  # the child would run nothing if the setup code cannot compile: no program could pass
        compile(raw.get("test_setup_code", ""), "test_setup_code", "exec")
    except (TypeError, ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"test_setup_code must be Python code (run in the sandbox after the program): {e}") from None
    timeout, memory_mb = raw.get("timeout", 4.0), raw.get("memory_mb", 1024)
    if type(timeout) not in (int, float) or not 0 < timeout <= 3600:
        raise ValueError(f"timeout must be a number of seconds in (0, 3600], got {json.dumps(timeout)}")
    if type(memory_mb) is not int or not 64 <= memory_mb <= 1 << 20:
        raise ValueError(f"memory_mb must be an integer from 64 (Python needs that much), got {json.dumps(memory_mb)}")


# ------------------------------------------------------------------------------------------- reading files
class DataError(ValueError):
    """A dataset problem, reported as FILE:LINE: what is wrong."""


def load_rows(path: str, task: str = "auto", skip_bad_rows: bool = False, prompt_length=None,
              max_prompt_length: int = 0, fields: str | None = None) -> tuple[list[dict], list[tuple]]:
    """The rows of a JSONL file (read_rows), and the bad ones as (line, what is wrong). A bad row stops the run, saying
    how many there are, unless skip_bad_rows."""
    rows, bad = read_rows(path, task, prompt_length, max_prompt_length, fields)
    if bad and not skip_bad_rows:
        raise DataError(f"{path}:{bad[0][0]}: {bad[0][1]}\nbad rows: {len(bad)} of {len(rows) + len(bad)} "
                        f"{bad_lines(bad)}; --skip-bad-rows trains without them")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows, bad


def read_rows(path: str, task: str, prompt_length, max_prompt_length: int, fields: str | None):
    """Each row of a JSONL file checked and put in the fields its reward reads (rewards.to_row, with --fields' names),
    or as (line, what is wrong). Given prompt_length (a prompt's tokens in the template), a prompt longer than
    max_prompt_length is a bad row."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows, bad = [], []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                if line.strip():
                    row = to_row(json_row(line), task, field_map(fields) if fields else None)
                    if prompt_length and (tokens := prompt_length(row["prompt"])) > max_prompt_length:
                        raise ValueError(f"the prompt is {tokens} tokens, more than --max-prompt-length "
                                         f"{max_prompt_length}")
                    rows.append(row)
            except ValueError as e:
                bad.append((n, str(e)))
    return rows, bad


def bad_lines(bad: list[tuple]) -> str:
    return "(line " + ", ".join(str(n) for n, _ in bad[:10]) + (", ...)" if len(bad) > 10 else ")")


def json_row(line: bytes) -> dict:
    """One JSONL line as a JSON object, or a ValueError saying why it is not one."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object (one dataset row)")
    return row
