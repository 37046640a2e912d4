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
# then at most a unit of up to three words made of letters ("12 cm", "18 square feet", "60 km/h").
NUMBER = re.compile(
    r"(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)"
    r"(?:\s*/\s*(?P<den>-?\d+(?:\.\d+)?))?"
    r"(?:\s*(?P<unit>[A-Za-z°µ]+(?:\s*[./]?\s*[A-Za-z°µ]+){0,2}))?"
)
# Words after a number that change or hedge it: "5 or 6", "5 and a half", "3 million" are not the number 5 or 3.
NOT_A_UNIT = {"or", "and", "to", "plus", "minus", "times", "half", "quarter", "third", "dozen", "hundred",
              "thousand", "million", "billion", "trillion", "more", "less", "over", "under", "about", "approximately"}


def plain(text: str) -> str:
    r"""LaTeX and currency dressing removed: `\frac{3}{4}` -> `3/4`, `\text{ cm}` -> ` cm`, `$`, `%`, `^\circ`,
    Unicode minus, and one pair of enclosing parentheses, so that `(5)` is 5 but `2(3)` stays unreadable."""
    text = unbox(text).strip().replace("\u2212", "-")
    text = re.sub(r"\\[dt]?frac(\d)(\d)", r"\1/\2", text)  # \frac12
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r" \1", text)
    text = re.sub(r"\^\{?\\circ\}?|\\left|\\right|\\[$%!,]|[$%]", "", text).strip().rstrip(".").strip()
    return text[1:-1].strip() if re.fullmatch(r"\([^()]*\)", text) else text


def parse_number(text: str) -> Fraction | None:
    r"""An exact number from an answer string: `1,234`, `-0.5`, `3/4`, `\frac{3}{4}`, `\boxed{7}`, `$5`, `12 cm`."""
    match = NUMBER.fullmatch(plain(text))
    if match is None or NOT_A_UNIT & set(re.split(r"[\s./]+", (match["unit"] or "").lower())):
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
    r"""Numbers compare exactly (as fractions, so 0.75 == 3/4); anything else as text without LaTeX dressing or
    spaces (so `\boxed{x + 1}` matches `x+1`)."""
    got, want = parse_number(predicted), parse_number(gold)
    if got is not None and want is not None:
        return got == want
    return re.sub(r"\s+", "", plain(predicted)) == re.sub(r"\s+", "", plain(gold))


def accuracy_reward(completion: str, answer: str, **row) -> float:
    """1 if the completion's single `<answer>` block holds the gold answer, else 0."""
    predicted = extract_answer(completion)
    return float(predicted is not None and same_answer(predicted, gold_answer(str(answer))))
