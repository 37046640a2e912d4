"""The R1-Zero prompt template and its rule-based rewards (DeepSeek-R1, section 2.2).

A reward function is plain: `(completion: str, **row) -> float`, where `row` is the dataset row.
Nothing here imports torch, so a reward can be tested, reused or run in a worker on its own.
"""
import re
from fractions import Fraction

# DeepSeek-R1, Table 1. The template ends with "Assistant:", so `<think>` is part of the *completion*:
# the model must learn to open its reasoning itself, and format_reward checks that it did.
TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {prompt}. Assistant:"
)

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
FORMAT = re.compile(r"\s*<think>.*</think>\s*<answer>.*</answer>\s*", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def r1_zero_prompt(prompt: str) -> str:
    """The question placed in the R1-Zero template, literally (so "...?" becomes "...?. Assistant:", as in the paper)."""
    return TEMPLATE.format(prompt=prompt.strip())


def format_reward(completion: str, **row) -> float:
    """1 if the completion is `<think>...</think> <answer>...</answer>` and only whitespace around, each tag once."""
    once = all(completion.count(tag) == 1 for tag in TAGS)
    return float(once and FORMAT.fullmatch(completion) is not None)


def extract_answer(completion: str) -> str | None:
    """The content of the completion's single `<answer>` block; None if there is none or more than one."""
    found = ANSWER.findall(completion)
    return found[0].strip() if len(found) == 1 else None


def unbox(text: str) -> str:
    r"""The content of the last `\boxed{...}`, matching nested braces; the text itself if there is none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return text
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return text


# A number: optional sign, digits with optional thousands separators and decimals, optionally "/ number";
# then at most a unit made of letters (no digits, so "42 or 43" is not read as 42).
NUMBER = re.compile(
    r"(?P<num>-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)"
    r"(?:\s*/\s*(?P<den>-?\d+(?:\.\d+)?))?"
    r"\s*(?:[A-Za-z°µ][A-Za-z°µ./ ]*)?"
)


def parse_number(text: str) -> Fraction | None:
    r"""An exact number from an answer string: `1,234`, `-0.5`, `3/4`, `\frac{3}{4}`, `\boxed{7}`, `$5`, `12 cm`."""
    text = unbox(text).strip()
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\[$%]|[$()%]|\\!|\\,", "", text).strip().rstrip(".").strip()
    match = NUMBER.fullmatch(text)
    if match is None:
        return None
    value = Fraction(match["num"].replace(",", ""))
    if match["den"] is not None:
        den = Fraction(match["den"])
        return value / den if den != 0 else None
    return value


def gold_answer(answer: str) -> str:
    """The gold answer of a row; GSM8K writes the worked solution and then `#### 42`."""
    return answer.split("####")[-1].strip()


def same_answer(predicted: str, gold: str) -> bool:
    """Numbers compare exactly (as fractions, so 0.75 == 3/4); anything else compares as a stripped string."""
    got, want = parse_number(predicted), parse_number(gold)
    return got == want if got is not None and want is not None else predicted.strip() == gold.strip()


def accuracy_reward(completion: str, answer: str, **row) -> float:
    """1 if the completion's single `<answer>` block holds the gold answer, else 0."""
    predicted = extract_answer(completion)
    return float(predicted is not None and same_answer(predicted, gold_answer(str(answer))))
