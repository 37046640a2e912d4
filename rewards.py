"""The R1-Zero prompt template, its rule-based rewards (DeepSeek-R1, section 2.2), and the datasets they score.

A reward function is plain: `(completion: str, **row) -> float`, where `row` is the dataset row. Accuracy has a
reward per task: math (compare the final answer), code (run the program against the row's tests, sandboxed) and
countdown (an arithmetic expression that hits a target). Nothing here imports torch, so a reward can be tested,
reused or run in a worker on its own. Run as a script, this file is the code sandbox's child (end of the file).
"""
import ast
import errno
import functools
import json
import logging
import operator
import os
import re
import signal
import stat
import sys
import threading
import warnings
from fractions import Fraction

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
    """The question placed in the R1-Zero template, literally (so "...?" becomes "...?. Assistant:", as in the paper)."""
    return TEMPLATE.format(prompt=prompt.strip())


def r1_zero_messages(prompt: str) -> list[dict]:
    """The question as a chat for an instruct model's own template: the template's instruction (all of it before
    "User:") as the system message, the question as the user's."""
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": prompt.strip()}]


def format_reward(completion: str, **row) -> float:
    """1 if the completion is `<think>...</think> <answer>...</answer>` and only whitespace around, each tag once
    and neither block empty (empty tags would earn the reward without any reasoning or answer). Cut at the tags with
    str.partition: linear in the length, where a regular expression backtracks on near-misses."""
    if any(completion.count(tag) != 1 for tag in TAGS):
        return 0.0
    pieces, rest = [], completion  # before <think>, the thinking, between, the answer; then what follows </answer>
    for tag in TAGS:
        before, found, rest = rest.partition(tag)
        if not found:  # the tags are out of order
            return 0.0
        pieces.append(before)
    outside, inside = pieces[0::2] + [rest], pieces[1::2]
    return float(not any(p.strip() for p in outside) and all(p.strip() for p in inside))


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
    text = outside_thinking(completion)
    start = text.find("<answer>")
    end = text.find("</answer>", start)
    if start < 0 or end < 0:
        return None
    second = text.find("<answer>", end)  # a second block needs its own closing tag, as a regex's findall would
    if second >= 0 and text.find("</answer>", second) >= 0:
        return None
    return text[start + len("<answer>"):end].strip()


# ------------------------------------------------------------------------------------------------------- math


BRACES = re.compile(r"[{}]")


def closing_brace(text: str, i: int) -> int:
    """The index of the `}` closing the `{` just before text[i]; -1 if it is never closed."""
    depth = 1
    for brace in BRACES.finditer(text, i):
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


# A number, read from text whose whitespace plain() has made single spaces: optional sign, digits with optional
# thousands separators and decimals, an optional exponent of at most four digits (1e9999 is exact and fast;
# 1e999999999 would not be), optionally "/ number", optionally after a whole part (the mixed number "12 3/5");
# then at most a unit of up to three words ("12 cm", "18 square feet", "60 km/h"). A one-letter unit needs a space
# before it: "5 m" is 5, but "2x" and "3i" are algebra, not the numbers 2 and 3. Every part is delimited, so a
# failed match backtracks in linear time.
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
    r"""LaTeX and currency dressing removed: `\frac{3}{4}` -> `3/4`, `12\frac{3}{5}` -> `12 3/5`, `2.5 \times
    10^{3}` -> `2.5e3`, `\text{ cm}` -> ` cm`, `9 (apples)` -> `9 apples`, `70{,}000` -> `70,000`; `$`, `%` (so
    `50%` reads as 50, GSM8K's convention, and not as 0.5), degrees, Unicode minus, and one pair of enclosing
    parentheses, so that `(5)` is 5 but `2(3)` stays unreadable. Whitespace runs become one space first, so that
    no pattern here scans a run more than once."""
    text = re.sub(r"\s+", " ", unbox(text)).replace("\u2212", "-").replace("{,}", ",")
    text = re.sub(r"(\d) ?(?=\\[dt]?frac)", r"\1 ", text)  # a mixed number: 12\frac{3}{5} is 12 + 3/5
    text = re.sub(r"\\[dt]?frac ?(\d) ?(\d)", r"\1/\2", text)  # \frac12, \frac 35
    text = re.sub(r"\\[dt]?frac ?\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r" ?(?:\\times|\\cdot|×) ?10\^\{?([-+]?\d+)\}?", r"e\1", text)
    text = re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r" \1", text)
    text = re.sub(r"\^\{?\\circ\}?|°", " ", text)
    text = re.sub(r"\s+", " ", re.sub(r"\\left|\\right|\\[$%!,]|[$%]", "", text)).strip().rstrip(".").strip()
    text = re.sub(r" ?\(([A-Za-z ]+)\)$", r" \1", text)  # a unit in parentheses
    text = re.sub(r"^[A-Za-z] ?= ?", "", text)  # x = 5
    return text[1:-1].strip() if re.fullmatch(r"\([^()]*\)", text) else text


def parse_number(text: str) -> Fraction | None:
    r"""An exact number from an answer string: `1,234`, `-0.5`, `3/4`, `\frac{3}{4}`, `2\frac{1}{2}`, `\boxed{7}`,
    `$5`, `12 cm`, `1.5e3`; None for anything else, including numbers too long to read (over 4300 digits)."""
    match = NUMBER.fullmatch(plain(text))
    if match is None or NOT_A_UNIT & set(re.split(r"[ ./]+", (match["unit"] or "").lower())):
        return None
    try:
        value = Fraction(match["num"].replace(",", ""))
        den = Fraction(match["den"]) if match["den"] is not None else 1
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
    """An answer as text without LaTeX dressing or spaces: how answers that are not one number compare."""
    return plain(answer).replace(" ", "")


def answer_key(answer: str):
    """What answers are grouped by in a majority vote: the number, if the answer reads as one, else the text without
    LaTeX dressing or spaces (so `x + 1` and `\\boxed{x+1}` are one answer)."""
    number = parse_number(answer)
    return number if number is not None else plain_text(answer)


def accuracy_reward(completion: str, answer, math_verify: bool = True, **row) -> float:
    """1 if the completion's single `<answer>` block holds the gold answer, else 0. A gold answer that reads as one
    number is compared by our exact checker alone; any other by ours or, where installed, math-verify."""
    predicted = extract_answer(completion)
    if predicted is None:
        return 0.0
    gold = gold_answer(answer)
    return float(same_answer(predicted, gold)
                 or math_verify and parse_number(gold) is None and math_verify_equal(predicted, gold))


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
    r"""math-verify's judgement that `predicted` equals `gold`, read as LaTeX (so `\sqrt 2` is `\sqrt{2}`, `{1, 2}` is
    `{2, 1}`, `x = 5` is 5). False where it is not installed, for over-long answers, after MATH_VERIFY_SECONDS, and
    off the main thread (its timer is a signal). A `%` is dressing here as in ours: math-verify would read `1800%`
    as 18."""
    mv = load_math_verify()
    if mv is None or len(predicted) > MATH_VERIFY_CHARS or threading.current_thread() is not threading.main_thread():
        return False
    predicted, gold = (re.sub(r"\\?%", "", text) for text in (predicted, gold))
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, MATH_VERIFY_SECONDS)
            return mv.verify(read_latex(gold), read_latex(predicted), timeout_seconds=None)
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


# -------------------------------------------------------------------------------------------------- countdown
# TinyZero's task: reach the target with each given number used exactly once and + - * / and parentheses.

OPERATIONS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


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
# R1-Zero: for code, "the model's output is directly executed" against test cases. The program is hostile input.
# It runs in a child process that confines itself with every layer this OS offers without root (README, "The code
# sandbox"), and it never sees what the tests expect: a test `assert f(2) == 4` sends only `f(2)` to the child,
# which sends back the value's repr; the comparison with 4 happens here, on values read as Python literals. So
# exiting early, printing "all tests passed", writing a forged report or patching `assert`, `==` or `repr` gains
# nothing: a pass needs the right values, which only a right program computes.

FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
COMPARISONS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
               ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not}
BUILDERS = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict, "float": float}
NOT_RUN = object()  # the value of an expression the child did not report: it raised, or the child died first
REPORT_BYTES = 1 << 20  # the most of a child's report (and of any file it writes) that counts
VALUE_BYTES = 1 << 15  # the longest repr of one value read back: a set literal of colliding hashes reads in O(n^2)
warnings.filterwarnings("ignore", module="<report>")  # a report's "0x1for" must not print warnings in the trainer


def extract_program(completion: str) -> str | None:
    """The program in the `<answer>` block: its fenced code blocks if it has any, else all of it."""
    answer = extract_answer(completion)
    fenced = FENCE.findall(answer or "")
    return "\n".join(fenced) if fenced else answer


def parse_test(test: str) -> tuple:
    """A test `assert A OP B` as (OP, [A, B]), `assert A` as (bool, [A]), `assert not A` as (not, [A]). Each
    operand is (True, value) for a literal, which stays here, or (False, source) for the child to evaluate."""
    try:
        body = ast.parse(test).body
    except (SyntaxError, ValueError):
        body = []
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        raise ValueError(f"a test must be one assert statement, got {test!r}")
    claim = body[0].test
    if isinstance(claim, ast.Compare):
        if len(claim.ops) != 1 or type(claim.ops[0]) not in COMPARISONS:
            raise ValueError(f"a test compares once, with == != < <= > >= is or is not, got {test!r}")
        operands = [operand(claim.left), operand(claim.comparators[0])]
        if not any(known for known, _ in operands):  # both sides would run in the child, which could rig both
            raise ValueError(f"a test compares with a value written out (a literal), got {test!r}")
        return COMPARISONS[type(claim.ops[0])], operands
    if isinstance(claim, ast.UnaryOp) and isinstance(claim.op, ast.Not):
        return operator.not_, [operand(claim.operand)]
    return bool, [operand(claim)]


def operand(node: ast.expr) -> tuple[bool, object]:
    """(True, value) for a value known here: a literal, or one of BUILDERS applied to literals (`set((4, 5))`,
    `float('inf')`); else (False, source), for the child to evaluate."""
    try:
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in BUILDERS and not node.keywords:
            return True, BUILDERS[node.func.id](*map(ast.literal_eval, node.args))
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, ast.unparse(node)


def literal(text) -> object:
    """A value the child reported, read as a Python literal (parsed, never run); NOT_RUN if it is not one."""
    try:
        if not isinstance(text, str) or len(text) > VALUE_BYTES:
            return NOT_RUN
        return ast.literal_eval(compile(text, "<report>", "eval", ast.PyCF_ONLY_AST))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_RUN


def passes(check, args: list) -> bool:
    try:
        return all(a is not NOT_RUN for a in args) and bool(check(*args))
    except Exception:  # `[1] < 2`: a value of the wrong type fails its test
        return False


def code_reward(completion: str, tests: list[str], timeout: float = 4.0, memory_mb: int = 1024, **row) -> float:
    """The fraction of the row's tests that the program in the answer passes, run in the sandbox (0 without one).
    `timeout` (wall-clock seconds) and `memory_mb` can be set per row."""
    program = extract_program(completion)
    if not program:
        return 0.0
    parsed = [parse_test(t) for t in tests]
    sources = [source for _, operands in parsed for is_literal, source in operands if not is_literal]
    values = iter(run_sandboxed(program, sources, timeout, memory_mb))
    return sum(passes(check, [v if is_literal else next(values) for is_literal, v in operands])
               for check, operands in parsed) / len(parsed)


def run_sandboxed(program: str, expressions: list[str], timeout: float, memory_mb: int) -> list:
    """Run `program` in a confined child, then evaluate each expression in its namespace: their values, NOT_RUN
    where one raised or the child had died. After `timeout` seconds the child's whole process group is killed."""
    import select  # imported here, like the others, so that the child (which runs this file) starts faster
    import signal
    import subprocess
    import tempfile
    if sys.platform != "linux":
        raise OSError("the code sandbox needs Linux (README, 'The code sandbox')")
    tmp = tempfile.mkdtemp(prefix="grpo-sandbox-")
    try:
        with open(os.path.join(tmp, "job.json"), "w") as f:
            json.dump({"program": program, "expressions": expressions, "cpu_seconds": int(timeout) + 1,
                       "memory_mb": memory_mb}, f)
        child = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), tmp], cwd=tmp, env={},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        pidfd = os.pidfd_open(child.pid)  # readable when the child exits: no polling loop, as Popen.wait has
        exits = select.poll()
        exits.register(pidfd, select.POLLIN)
        exited = exits.poll(timeout * 1000)
        os.close(pidfd)
        if not exited:
            os.killpg(child.pid, signal.SIGKILL)  # the child's whole process group
        child.wait()
        values = [NOT_RUN] * len(expressions)
        for line in read_report(os.path.join(tmp, "report.jsonl")):
            try:
                i, text = json.loads(line)
            except (ValueError, TypeError, RecursionError):
                continue
            if type(i) is int and 0 <= i < len(values) and values[i] is NOT_RUN:  # each value read at most once
                values[i] = literal(text)
        return values
    finally:  # rm, not shutil.rmtree, which recurses: a program that nests 1000 directories would make it raise
        subprocess.run(["rm", "-rf", "--", tmp], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def read_report(path: str) -> list[str]:
    """The lines of the child's report, if it is a regular file (not a link or FIFO put there by the program),
    up to REPORT_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        return f.read(REPORT_BYTES).decode("utf-8", "replace").splitlines() if regular else []


ACCURACY = {"math": accuracy_reward, "code": code_reward, "countdown": countdown_reward}  # by a row's "task"


def accuracy_rewards(completions: list[str], rows: list[dict], rewards: dict = ACCURACY, workers: int | None = None):
    """The accuracy reward of each completion against its row, by the row's task. Code rows are scored by a bounded
    pool of threads, each waiting on its own sandboxed child, so a batch of programs runs in parallel; the others
    here, in this thread (math-verify's timeouts work only in the main thread)."""
    from concurrent.futures import ThreadPoolExecutor  # imported here: see run_sandboxed
    score = lambda i: rewards[rows[i].get("task", "math")](completions[i], **rows[i])  # noqa: E731
    code = [i for i, row in enumerate(rows) if row.get("task") == "code"]
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        ran = dict(zip(code, pool.map(score, code)))
    return [ran[i] if i in ran else score(i) for i in range(len(rows))]


# --------------------------------------------------------------------------------------------------- datasets
# The fields that tell a row's dataset, tried in this order; what each becomes is in to_row and data/README.md.
FIELDS = {"code": ("prompt", "tests"), "countdown": ("nums", "target"), "competition_math": ("problem",),
          "gsm8k": ("question", "answer"), "math": ("prompt", "answer")}
QUESTION = ("prompt", "question", "problem")  # a row holds its question in one of these
CONTEXT = ("body", "context", "passage")  # text that comes before the question (ASDiv's body: "Seven apples...")


def to_row(raw: dict, task: str = "auto") -> dict:
    r"""A dataset row in the fields the rewards read, with its reward's "task" (math, code or countdown). The prompt
    is the row's question (GSM8K's question, MATH's problem) after any context (ASDiv's body); a MATH row's answer is
    its `answer`, else its solution's last `\boxed{}`; a countdown row gets its prompt. Other fields stay (they reach
    the rewards as keyword arguments). No text is dropped: a row with two questions is refused. Raises ValueError
    saying what is wrong."""
    if task == "auto":
        task = next((t for t, need in FIELDS.items() if all(f in raw for f in need)), None)
        if task is None and "prompt" not in raw:
            raise ValueError(f"cannot tell the task from the fields {sorted(raw)}: a row needs one of "
                             + ", ".join(f"{'+'.join(need)} ({t})" for t, need in FIELDS.items()))
        task = task or "math"
    missing = [f for f in FIELDS[task] if f not in raw]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)} for a {task} row")
    if "completion" in raw:
        raise ValueError("a row may not have a field named completion: rewards take the completion by that name")
    questions = [f for f in QUESTION if f in raw]
    if len(questions) > 1:
        raise ValueError(f"the fields {' and '.join(questions)} both look like the question: keep one")
    texts = [f for f in CONTEXT + QUESTION if f in raw]
    if not_text := [f for f in texts if not isinstance(raw[f], str)]:
        raise ValueError(f"{not_text[0]} must be a non-empty string, got {json.dumps(raw[not_text[0]])[:80]}")
    row = dict(raw, task={"gsm8k": "math", "competition_math": "math"}.get(task, task))
    if texts:
        row["prompt"] = " ".join(raw[f].strip() for f in texts)
    if task == "competition_math" and "answer" not in raw:
        row["answer"] = last_boxed(str(raw.get("solution", "")))
        if row["answer"] is None:
            raise ValueError("a competition_math row needs an answer, or a solution with a \\boxed{} answer")
    if task == "countdown":
        if not (isinstance(raw["nums"], list) and raw["nums"] and all(type(n) is int for n in raw["nums"] + [raw["target"]])):
            raise ValueError(f"nums must be a list of integers and target an integer, got nums={raw['nums']!r}, "
                             f"target={raw['target']!r}")
        row.setdefault("prompt", countdown_prompt(raw["nums"], raw["target"]))
    if task == "code":
        check_code_row(raw)
    if row["task"] == "math" and (isinstance(row["answer"], bool) or not isinstance(row["answer"], (str, int, float))
                                  or not gold_answer(row["answer"])):
        raise ValueError(f"answer must be a non-empty string or a number, got {json.dumps(row['answer'])}")
    if not isinstance(row["prompt"], str) or not row["prompt"].strip():
        raise ValueError("prompt must be a non-empty string")
    return row


def needs_math_verify(row: dict) -> bool:
    """A math row whose gold answer is not one number: math-verify compares it, where installed; else only as text."""
    return row["task"] == "math" and parse_number(gold_answer(row["answer"])) is None


def check_code_row(raw: dict) -> None:
    """Tests in a form the sandbox can check, and a timeout and memory limit that mean something."""
    if not (isinstance(raw["tests"], list) and raw["tests"] and all(isinstance(t, str) for t in raw["tests"])):
        raise ValueError("tests must be a non-empty list of assert statements (strings)")
    for test in raw["tests"]:
        parse_test(test)
    timeout, memory_mb = raw.get("timeout", 4.0), raw.get("memory_mb", 1024)
    if type(timeout) not in (int, float) or not 0 < timeout <= 3600:
        raise ValueError(f"timeout must be a number of seconds in (0, 3600], got {json.dumps(timeout)}")
    if type(memory_mb) is not int or not 64 <= memory_mb <= 1 << 20:
        raise ValueError(f"memory_mb must be an integer from 64 (Python needs that much), got {json.dumps(memory_mb)}")


# ------------------------------------------------------------------------------------- the sandbox's child side
# `python -I -S rewards.py TMP` (started by run_sandboxed): read TMP/job.json, confine this process, run the program
# as a module named "solution" (so its `if __name__ == "__main__"` block does not run), evaluate each expression in
# its namespace, and write `[index, repr(value)]` lines to TMP/report.jsonl.

LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
LANDLOCK_READ = 0b1101  # execute, read file, read directory
LANDLOCK_READ_WRITE = 0b100000000001110  # read file, read directory, write file, truncate: no new files or links
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
# The system calls the child may not make (they fail with EPERM): name: (x86_64 number, aarch64 number or None).
FORBIDDEN_SYSCALLS = {
    # new processes and threads
    "clone": (56, 220), "clone3": (435, 435), "fork": (57, None), "vfork": (58, None), "execve": (59, 221),
    "execveat": (322, 281),
    # signals, and acting on other processes (same-uid processes would otherwise allow it)
    "kill": (62, 129), "tkill": (200, 130), "tgkill": (234, 131), "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240), "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424),
    "pidfd_getfd": (438, 438), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "process_madvise": (440, 440), "process_mrelease": (448, 448),
    "kcmp": (312, 272), "prlimit64": (302, 261), "setpriority": (141, 140), "sched_setparam": (142, 118),
    "sched_setscheduler": (144, 119), "sched_setaffinity": (203, 122), "sched_setattr": (314, 274),
    "ioprio_set": (251, 30), "migrate_pages": (256, 238), "move_pages": (279, 239),
    # network (socketpair too: with F_SETOWN or FIOSETOWN a socket can signal another process)
    "socket": (41, 198), "socketpair": (53, 199), "io_uring_setup": (425, 425),
    # what a file's owner may do that Landlock does not cover (the child of a root trainer owns root's files):
    # metadata, attributes, extended attributes, locks, space, watching, handles
    "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452), "chown": (92, None),
    "fchown": (93, 55), "lchown": (94, None), "fchownat": (260, 54), "utime": (132, None), "utimes": (235, None),
    "futimesat": (261, None), "utimensat": (280, 88), "file_setattr": (469, 469), "setxattr": (188, 5),
    "lsetxattr": (189, 6), "fsetxattr": (190, 7), "removexattr": (197, 14), "lremovexattr": (198, 15),
    "fremovexattr": (199, 16), "setxattrat": (463, 463), "removexattrat": (466, 466), "getxattr": (191, 8),
    "lgetxattr": (192, 9), "fgetxattr": (193, 10), "listxattr": (194, 11), "llistxattr": (195, 12),
    "flistxattr": (196, 13), "getxattrat": (464, 464), "listxattrat": (465, 465), "flock": (73, 32),
    "fallocate": (285, 47), "inotify_init": (253, None), "inotify_init1": (294, 26),
    "inotify_add_watch": (254, 27), "fanotify_init": (300, 262), "fanotify_mark": (301, 263),
    "name_to_handle_at": (303, 264), "open_by_handle_at": (304, 265), "cachestat": (451, 451),
    # System V and POSIX IPC, kernel keys: state shared with other processes or outliving the child
    "shmget": (29, 194), "shmat": (30, 196), "shmctl": (31, 195), "shmdt": (67, 197), "semget": (64, 190),
    "semop": (65, 193), "semctl": (66, 191), "semtimedop": (220, 192), "msgget": (68, 186), "msgsnd": (69, 189),
    "msgrcv": (70, 188), "msgctl": (71, 187), "mq_open": (240, 180), "mq_unlink": (241, 181),
    "mq_timedsend": (242, 182), "mq_timedreceive": (243, 183), "mq_notify": (244, 184),
    "mq_getsetattr": (245, 185), "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219),
    # namespaces
    "unshare": (272, 97), "setns": (308, 268),
}
# Calls allowed only with these commands (their second argument): fcntl's descriptor flags and duplication (not
# F_SETOWN, F_SETSIG, leases, locks), and ioctl's terminal queries and close-on-exec (not file attributes).
ALLOWED_COMMANDS = {"fcntl": ((72, 25), (0, 1, 2, 3, 4, 1030)),
                    "ioctl": ((16, 29), (0x5401, 0x5413, 0x541B, 0x5450, 0x5451))}
AUDIT_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # the column above, and the arch seccomp sees


def confine(tmp: str, cpu_seconds: int, memory_mb: int) -> None:
    """Everything the child may not do, applied to itself before the program runs (README, "The code sandbox")."""
    import ctypes
    import resource
    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_mb << 20),
                         (resource.RLIMIT_FSIZE, REPORT_BYTES), (resource.RLIMIT_NOFILE, 64),
                         (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # required by both Landlock and seccomp, and final
    if os.geteuid() == 0:  # root's capabilities would override the limits below: keep uid 0 (it may own Python's
        for capability in range(64):  # files), empty the bounding set (PR_CAPBSET_DROP), then drop every capability
            libc.prctl(24, capability, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # capset, version 3
        if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:
            raise OSError(ctypes.get_errno(), "capset")
    restrict_files(ctypes, libc, tmp)
    forbid_syscalls(ctypes, libc)


def restrict_files(ctypes, libc, tmp: str) -> None:
    """Landlock (Linux 5.13+, no root needed): read Python's standard library, read and write the files already in
    the temp dir, nothing else on the file system; from ABI 4 no TCP, from ABI 6 no signal to any process outside
    the sandbox. Skipped where the kernel has no Landlock (the README says what that leaves)."""
    syscall = lambda *args: libc.syscall(*map(ctypes.c_long, args))  # noqa: E731
    abi = syscall(LANDLOCK_CREATE_RULESET, 0, 0, 1)  # flag 1: ask for the ABI version
    if abi < 1:
        return
    handled = (1 << {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)) - 1  # every file-system right this ABI knows
    ruleset_attr = (ctypes.c_uint64 * 3)(handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = syscall(LANDLOCK_CREATE_RULESET, ctypes.addressof(ruleset_attr), ctypes.sizeof(ruleset_attr), 0)

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    for path, access in [(p, LANDLOCK_READ) for p in sys.path if os.path.isdir(p)] + [(tmp, LANDLOCK_READ_WRITE)]:
        rule = PathBeneath(access & handled, os.open(path, os.O_PATH | os.O_CLOEXEC))
        if syscall(LANDLOCK_ADD_RULE, ruleset, 1, ctypes.addressof(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
        os.close(rule.parent_fd)
    if ruleset < 0 or syscall(LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock")


def forbid_syscalls(ctypes, libc) -> None:
    """seccomp: fail with EPERM each FORBIDDEN_SYSCALLS call, the commands ALLOWED_COMMANDS leaves out, and every
    call made through another ABI (i386, x32), which would get around the list. A classic BPF program."""
    if os.uname().machine not in AUDIT_ARCH:
        return
    column, arch = AUDIT_ARCH[os.uname().machine]
    LOAD, EQUAL, AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    ALLOW, DENY = (RETURN, 0, 0, 0x7FFF0000), (RETURN, 0, 0, 0x00050000 | errno.EPERM)
    program = [(LOAD, 0, 0, 4), (EQUAL, 0, "deny", arch), (LOAD, 0, 0, 0), (AT_LEAST, "deny", 0, 0x40000000)]
    program += [(EQUAL, "deny", 0, n[column]) for n in FORBIDDEN_SYSCALLS.values() if n[column] is not None]
    for name, (numbers, commands) in ALLOWED_COMMANDS.items():  # load args[1], the command, only for this call
        program += [(EQUAL, 0, name, numbers[column]), (LOAD, 0, 0, 24)]
        program += [(EQUAL, "allow", 0, command) for command in commands] + [DENY, name]
    program += ["allow", ALLOW, "deny", DENY]
    code, labels = [], {}  # a string labels the instruction after it; jumps count from the next instruction
    for item in program:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    jump = lambda to, i: labels[to] - i - 1 if to else 0  # noqa: E731
    code = [(c, jump(t, i), jump(f, i), k) for i, (c, t, f, k) in enumerate(code)]

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    instructions = (Instruction * len(code))(*code)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(Program(len(code), instructions)), 0, 0):
        raise OSError(ctypes.get_errno(), "seccomp")


def run_job(tmp: str) -> None:
    with open(os.path.join(tmp, "job.json")) as f:
        job = json.load(f)
    report = open(os.path.join(tmp, "report.jsonl"), "w")
    confine(tmp, job["cpu_seconds"], job["memory_mb"])
    namespace = {"__name__": "solution"}
    try:
        exec(compile(job["program"], "solution.py", "exec"), namespace)
    except BaseException:  # SystemExit too: a program that stops before the tests passes none of them
        return
    for i, source in enumerate(job["expressions"]):
        try:
            report.write(json.dumps([i, repr(eval(source, namespace))]) + "\n")
            report.flush()
        except BaseException:  # this test fails; the next one still runs
            continue


if __name__ == "__main__":
    run_job(sys.argv[1])
