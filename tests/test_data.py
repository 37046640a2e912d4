"""Evaluation sets load as their publishers ship them: rows shaped field for field as a popular math evaluation
repository publishes them (the texts are written here), with the `--fields` line the README gives each set. Every
row loads, its prompt holds all of its text, and its gold answer scores 1 and a wrong one 0. Then `--check-data`."""
import json
import os
import subprocess
import sys

import pytest

from rewards import accuracy_rewards, choice_reward, field_map, load_rows, to_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIME = "Find the number of ordered pairs $(a,b)$ of integers with $a^2+b^2=25$."
OLYMPIAD = "Find all real $x$ such that $x^2 - 5x + 6 = 0$."

# name: (the README's --fields line, rows as the set writes them, a right answer and a wrong one per row)
PUBLISHED = {
    "aime24": (None, [{"id": 60, "problem": AIME, "question": AIME, "solution": "\\boxed{12}", "answer": "12",
                       "url": "https://example.org/2024_AIME_I/1"}], ["12"], ["13"]),
    "amc23": (None, [{"id": 0, "question": "How many miles from City $A$ will they meet?", "problem": "How many miles "
                      "from City $A$ will they meet?", "answer": ["27.0"]}], ["27"], ["28"]),
    "olympiadbench": ("answer=final_answer", [
        {"id": 1606, "subfield": "Algebra", "context": None, "question": OLYMPIAD, "solution": ["Factor: ..."],
         "final_answer": ["$2$", "$3$"], "is_multiple_answer": True, "unit": None, "answer_type": "Numerical"},
        {"id": 1607, "context": "Let $n$ be a positive integer.", "question": "Compute $\\sum_{k=1}^{4} k$.",
         "solution": ["..."], "final_answer": ["$10$"], "is_multiple_answer": False, "unit": None}],
        ["3, 2", "10"], ["2", "11"]),
    "svamp": (None, [{"ID": "chal-1", "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 "
                      "dollars on each pack", "Question": "How much do you have to pay to buy each pack?",
                      "Equation": "( 76.0 - 25.0 )", "Answer": 51.0, "Type": "Subtraction"}], ["51"], ["50"]),
    "mawps": ("question=input,answer=target", [{"input": "Mary had 7 nickels in her bank. Her dad gave her 5 more "
                                                "nickels. How many nickels does Mary have now?", "target": 12.0}],
              ["12"], ["11"]),
    "carp_en": ("question=content", [{"content": "Calculate: $3 \\times 4 - 2$.", "type": "arith",
                                      "answer": "10"}], ["10"], ["9"]),
    "sat_math": (None, [{"question": "If $2x + 3 = 11$, what is the value of $x$?",
                         "options": "(A) 2 (B) 4 (C) 6 (D) 8", "Answer": "B"}], ["(B) 4"], ["(C) 6"]),
    "aqua": ("answer=correct", [{"question": "A car travels 60 km in 1.5 hours. What is its speed?",
                                 "options": ["A)30 km/h", "B)40 km/h", "C)45 km/h", "D)50 km/h", "E)90 km/h"],
                                 "rationale": "60 / 1.5 = 40", "correct": "B"}], ["B"], ["E"]),
    "mmlu_stem": ("options=choices", [{"question": "What is the derivative of $x^2$?", "subject": "calculus",
                                       "choices": ["$x$", "$2x$", "$x^2$", "$2$"], "answer": 1}], ["B"], ["A"]),
    "gsm8k": (None, [{"question": "Tom has 3 apples and buys 4 more. How many apples?",
                      "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}], ["7"], ["8"]),
    "asdiv": (None, [{"body": "Seven apples are in a basket.", "question": "How many apples are in the basket?",
                      "answer": "7 (apples)", "formula": "7=7"}], ["7"], ["6"]),
    "math": (None, [{"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "solution": "$= \\boxed{\\frac{5}{6}}$.",
                     "answer": "\\frac{5}{6}", "level": 1}], ["\\frac{5}{6}"], ["\\frac{5}{7}"]),
    "minerva_math": (None, [{"problem": "Compute $2^{10}$.", "solution": "It is $\\boxed{1024}$.", "type": "Math"}],
                     ["1024"], ["1023"]),
    "college_math": (None, [{"question": "Evaluate $\\int_0^1 2x \\, dx$.", "answer": "$1$", "data_topic":
                             "calculus"}], ["1"], ["2"]),
    "gaokao2023en": (None, [{"question": "The set $A = \\{1, 2\\}$ has how many subsets?", "answer": "4"}], ["4"],
                     ["3"]),
    "tabmwp": ("context=table", [{"question": "What is the total?", "table": "item | cost\npen | 2\nbook | 5",
                                  "answer": "7", "choices": None}], ["7"], ["6"]),
}


def completion(answer: str) -> str:
    return f"<think>...</think> <answer>{answer}</answer>"


def texts_of(raw: dict, renames: dict) -> list[str]:
    """Every text the prompt must hold: the question, context and options, under the set's names or ours."""
    ours = {renames.get(k, k.lower()): v for k, v in raw.items()}
    found = [ours[f] for f in ("body", "context", "passage", "question", "problem", "prompt") if ours.get(f)]
    options = ours.get("options")
    return found + ([options] if isinstance(options, str) else [o[2:] if o[1] == ")" else o for o in options or []])


@pytest.mark.parametrize("name", PUBLISHED)
def test_a_published_set_loads_with_its_fields_line_and_scores_right(name, tmp_path):
    fields, raws, right, wrong = PUBLISHED[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(raw) + "\n" for raw in raws))
    rows, bad = load_rows(str(path), fields=fields)
    assert not bad and len(rows) == len(raws)
    for raw, row in zip(raws, rows):
        assert all(text.strip() in row["prompt"] for text in texts_of(raw, field_map(fields) if fields else {}))
    assert accuracy_rewards([completion(a) for a in right], rows) == [1.0] * len(rows)
    assert accuracy_rewards([completion(a) for a in wrong], rows) == [0.0] * len(rows)


def test_two_question_fields_are_one_question_only_when_they_hold_the_same_text():
    assert to_row({"problem": "What is 2 + 2?", "question": "What is 2 + 2? ", "answer": "4"})["prompt"] == \
        "What is 2 + 2?"
    with pytest.raises(ValueError, match="question and problem both look like the question, with different texts"):
        to_row({"problem": "What is 2 + 2?", "question": "What is 3 + 3?", "answer": "4"})


def test_field_names_compare_without_case_only_where_that_is_unambiguous():
    assert to_row({"QUESTION": "q?", "Answer": "1"})["prompt"] == "q?"
    row = to_row({"question": "q?", "Answer": "1", "answer": "2"})  # two cases of one name: each read as written
    assert row["answer"] == "2" and row["Answer"] == "1"
    assert to_row({"Input": "q?", "TARGET": 1}, renames=field_map("question=input,answer=Target"))["prompt"] == "q?"
    assert field_map("question=input,") == {"input": "question"}  # a trailing comma
    with pytest.raises(ValueError, match="the fields answer and target are both answer, with different values"):
        to_row({"question": "q?", "answer": "1", "target": "2"}, renames=field_map("answer=target"))


@pytest.mark.parametrize("text, message", [("question", "expected ours=theirs"), ("answer=", "expected ours=theirs"),
                                           ("reply=target", "ours one of"), ("a=b=c", "expected ours=theirs"),
                                           (",", "expected ours=theirs")])
def test_a_bad_fields_flag_is_refused_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        field_map(text)
    result = subprocess.run([sys.executable, "grpo.py", "--fields", text, "--check-data"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(f"grpo.py: error: --fields {text}: ")


@pytest.mark.parametrize("answer, score", [
    ("3, 2", 1.0), ("2, 3", 1.0), ("$2$, $3$", 1.0), ("\\boxed{2, 3}", 1.0), ("x = 2, x = 3", 1.0),
    ("2", 0.0), ("2, 3, 4", 0.0), ("2, 2", 0.0), ("2, 4", 0.0), ("2 3", 0.0), ("2, 3, 3", 0.0), ("", 0.0),
])
def test_several_gold_answers_need_them_all_in_any_order(answer, score):
    row = to_row({"question": "Solve.", "answer": ["$2$", "$3$"]})
    assert accuracy_rewards([completion(answer)], [row]) == [score]


def test_a_comma_inside_brackets_does_not_split_an_answer():
    row = to_row({"question": "Which points?", "answer": ["(1, 2)", "(3, 4)"]})
    assert accuracy_rewards([completion("(3, 4), (1, 2)")], [row]) == [1.0]
    assert accuracy_rewards([completion("(1, 2, 3, 4)")], [row]) == [0.0]


@pytest.mark.parametrize("answer, score", [
    ("B", 1.0), ("(B)", 1.0), ("B)", 1.0), ("B.", 1.0), ("\\boxed{B}", 1.0), ("$(B)$", 1.0),
    ("B) 6(√3 + √2)", 1.0), ("(B) $6(\\sqrt{3} + \\sqrt{2})$", 1.0),
    ("A", 0.0), ("(C)", 0.0), ("C) 6(√3 + √2)", 0.0), ("B or C", 0.0), ("B, D", 0.0), ("BC", 0.0), ("B6", 0.0),
    ("b", 0.0), ("the answer is B", 0.0), ("6(√3 + √2)", 0.0), ("", 0.0),
])
def test_multiple_choice_reads_the_letter_the_answer_gives(answer, score):
    row = to_row({"question": "Which?", "options": ["6", "6(√3 + √2)", "12", "3√2"], "answer": "B"})
    assert row["task"] == "choice" and row["answer"] == "B"
    assert choice_reward(completion(answer), **row) == score


@pytest.mark.parametrize("answer, score", [
    ("D) Both A and B", 1.0), ("(D) $\\text{Both A and B}$", 1.0), ("D", 1.0),
    ("D or A", 0.0), ("D) Both A and C", 0.0), ("A", 0.0), ("B) Both A and B", 0.0),
])
def test_the_gold_options_own_text_may_name_other_letters(answer, score):
    row = to_row({"question": "Which hold?", "options": ["x > 0", "y > 0", "neither", "Both A and B"], "answer": "D"})
    assert accuracy_rewards([completion(answer)], [row]) == [score]


def test_a_string_of_options_is_cut_at_its_labels_in_turn_only():
    row = to_row({"question": "Which?", "options": "(A) P(X) = 1/2 (B) P(Y) = 1 (C) P(X)P(Y)", "answer": "C"})
    assert row["options"] == ["P(X) = 1/2", "P(Y) = 1", "P(X)P(Y)"]  # no option X, and no text lost
    assert row["prompt"] == "Which?\n(A) P(X) = 1/2 (B) P(Y) = 1 (C) P(X)P(Y)"
    assert accuracy_rewards([completion(a) for a in ("C", "C) P(X)P(Y)", "C or B", "X")], [row] * 4) == [1, 1, 0, 0]


def test_a_row_that_says_its_task_is_choice_is_read_as_one():
    row = to_row({"task": "choice", "question": "Which?", "options": ["1", "2"], "answer": 1})
    assert row["answer"] == "B" and row["prompt"] == "Which?\n(A) 1\n(B) 2"
    assert accuracy_rewards([completion("B"), completion("A")], [row, row]) == [1.0, 0.0]


@pytest.mark.parametrize("raw, message", [
    ({"question": None, "answer": "3"}, "prompt must be a non-empty string: a row needs its question in"),
    ({"task": "choice", "question": "q", "answer": "A"}, "options must be a list of strings"),
    ({"question": "q", "options": ["1", "2"], "answer": "C"}, "one of the letters AB, got \"C\""),
    ({"question": "q", "options": ["1", "2"], "answer": 2}, "one of the letters AB, got 2"),
    ({"question": "q", "options": "1 or 2", "answer": "A"}, "options must be a list of strings"),
    ({"question": "q", "options": [1, 2], "answer": "A"}, "options must be a list of strings"),
    ({"question": "q", "answer": []}, "answer must be a non-empty string or a number, got"),
    ({"question": "q", "answer": ["1", None]}, "answer must be a non-empty string or a number, got"),
])
def test_a_bad_multiple_choice_or_list_row_says_what_is_wrong(raw, message):
    with pytest.raises(ValueError, match=message.replace("(", "\\(")):
        to_row(raw)


def check_data(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "grpo.py", "--check-data", *flags], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_check_data_says_what_loads_and_why_a_row_is_refused_then_exits(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"Body": "Tom has 3 apples.", "Question": "How many?", "Answer": 3}) + "\n")
    bad.write_text('{"question": "q?", "answer": "1"}\nnot json\n{"question": "q?"}\n')
    result = check_data("--data", str(good), "--eval-data", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert f"{good}: 1 rows loaded, 0 refused" in result.stdout
    assert f"{bad}: 1 rows loaded, 2 refused" in result.stdout
    assert f"{bad}:2: not valid JSON" in result.stdout and f"{bad}:3: cannot tell the task" in result.stdout
    assert "User: Tom has 3 apples. How many?. Assistant:" in result.stdout  # the prompt in the R1-Zero template
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    assert check_data("--data", str(good), "--eval-data", str(bad), "--skip-bad-rows").returncode == 0
    assert check_data("--data", str(tmp_path / "missing.jsonl")).returncode == 1
