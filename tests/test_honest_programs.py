"""Honest programs score 1 (issue 30): each value class that once could not cross the sandbox's boundary, with an
honest program and a forging one (an object whose __eq__, __hash__, __iter__, __len__ or __repr__ lies: it scores
0), and a benchmark-shaped set of problems with reference solutions (test_code_problems.py), all scoring 1."""
import os

import pytest

from rewards import code_reward, parse_test, to_row
from sandbox import NOT_RUN, literal

TIMEOUT = 4.0


def answer(program: str) -> str:
    return f"<think>plan</think><answer>\n```python\n{program}```\n</answer>"


def run(program: str, tests: list[str], **row) -> float:
    reward = code_reward(answer(program), tests, timeout=TIMEOUT, **row)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of ours is left, running or unreaped
    return reward


# Forging objects: each lies in one method the parent would run, were it to get the object.
LIARS = """
import collections
class Equal(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
class Hash:
    def __init__(self, value):
        self.value = value
    def __hash__(self):
        return hash(self.value)
    def __eq__(self, other):
        return True
class Looks:
    def __init__(self, text):
        self.text = text
    def __repr__(self):
        return self.text
class Long(list):
    def __len__(self):
        return 3
class Iterates(list):
    def __iter__(self):
        return iter([])
class Shows(list):
    def __iter__(self):
        return iter([0, 2, 4, 6])
class Says(str):
    def __repr__(self):
        return "'ok'"
class Tally(collections.Counter):
    def __eq__(self, other):
        return True
"""

def test_the_childs_checks_use_the_builtins_from_before_the_program():
    """The child's type checks and spelling are bound before the program runs: replacing type, id, repr, hex or
    dict.items's callers in builtins does not make a lying object cross."""
    patch = ("import builtins\nbuiltins.type = lambda value: str\nbuiltins.id = lambda value: 0\n"
             "builtins.repr = builtins.hex = lambda value: '3'\nbuiltins.isinstance = lambda *a: True\n")
    assert run(LIARS + patch + "def add(a, b):\n    return Looks(str(a + b))\n", ["assert add(1, 2) == 3"]) == 0.0
    assert run(patch + "def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3"]) == 1.0


# ---------------------------------------------------------------------------------------------------- dicts
DICTS = ["assert letters('abca') == {'a': 2, 'b': 1, 'c': 1}", "assert by_length(['a', 'bc', 'd']) == {1: ['a', 'd'], "
         "2: ['bc']}", "assert first_seen('abca') == {'a': 0, 'b': 1, 'c': 2}", "assert letters('') == {}",
         "assert nested(['ab']) == {'ab': {'a': 1, 'b': 1}}"]
DICTS_HONEST = ("from collections import Counter, OrderedDict, defaultdict\n"
                "def letters(s):\n    return Counter(s)\n"
                "def by_length(words):\n    groups = defaultdict(list)\n    for w in words:\n"
                "        groups[len(w)].append(w)\n    return groups\n"
                "def first_seen(s):\n    seen = OrderedDict()\n    for i, c in enumerate(s):\n"
                "        seen.setdefault(c, i)\n    return seen\n"
                "def nested(words):\n    return {w: Counter(w) for w in words}\n")


def test_counter_defaultdict_and_ordereddict_cross_as_the_dicts_they_equal():
    assert run(DICTS_HONEST, DICTS) == 1.0
    assert run(DICTS_HONEST.replace("Counter(s)", "Counter(s + 'a')"), DICTS) == 0.6  # a wrong count is caught


@pytest.mark.parametrize("forge", [
    "def letters(s):\n    return Tally()\n",  # a Counter subclass whose __eq__ says yes: not exactly a Counter
    "def letters(s):\n    return {c: Equal(0) for c in s}\n",  # a dict of values whose __eq__ says yes
    # Counter is a Python class: its methods can be replaced, but the child reads the dict underneath
    "collections.Counter.items = lambda self: [('a', 2), ('b', 1), ('c', 1)]\n"
    "collections.Counter.__repr__ = lambda self: \"{'a': 2, 'b': 1, 'c': 1}\"\n"
    "def letters(s):\n    return collections.Counter('zz')\n",
])
def test_a_forged_counter_scores_0(forge):
    assert run(LIARS + forge, DICTS[:1]) == 0.0


# ------------------------------------------------------------------------------------------------ frozensets
FROZEN = ["assert letter_set('abca') == frozenset('abc')", "assert pairs([1, 2, 3]) == {frozenset({1, 2}), "
          "frozenset({1, 3}), frozenset({2, 3})}", "assert letter_set('') == frozenset()"]
FROZEN_HONEST = ("import itertools\ndef letter_set(s):\n    return frozenset(s)\n"
                 "def pairs(xs):\n    return {frozenset(p) for p in itertools.combinations(xs, 2)}\n")


def test_frozensets_cross_alone_and_inside_sets():
    assert run(FROZEN_HONEST, FROZEN) == 1.0


@pytest.mark.parametrize("forge", [
    "class Frozen(frozenset):\n    __eq__ = lambda self, other: True\n    __hash__ = lambda self: 0\n"
    "def letter_set(s):\n    return Frozen()\ndef pairs(xs):\n    return {Frozen()}\n",
    "def letter_set(s):\n    return frozenset([Hash('a'), Hash('b'), Hash('c')])\n"  # items that hash as the
    "def pairs(xs):\n    return {frozenset([Hash(1), Hash(2)])}\n",  # right ones and equal anything
    "def letter_set(s):\n    return Looks(\"frozenset({'a', 'b', 'c'})\")\n"
    "def pairs(xs):\n    return Looks('{frozenset({1, 2}), frozenset({1, 3}), frozenset({2, 3})}')\n",
])
def test_a_forged_frozenset_scores_0(forge):
    assert run(LIARS + forge, FROZEN[:2]) == 0.0


# ------------------------------------------------------------------------------------------------ inf and nan
FLOATS = ["assert distance({0: {1: 2}}, 0, 5) == float('inf')", "assert math.isinf(distance({}, 0, 1))",
          "assert math.isnan(mean([]))", "assert mean([1, 2, 3]) == 2.0", "assert distances(2) == [0, math.inf]",
          "assert -distance({}, 1, 2) == -math.inf", "assert not math.isfinite(distance({}, 0, 1))"]
FLOATS_HONEST = ("def distance(graph, a, b):\n    return graph.get(a, {}).get(b, float('inf'))\n"
                 "def mean(xs):\n    return sum(xs) / len(xs) if xs else float('nan')\n"
                 "def distances(n):\n    return [0] + [float('inf')] * (n - 1)\n")


def test_inf_and_nan_cross_alone_and_inside_containers():
    assert run(FLOATS_HONEST, FLOATS) == 1.0
    assert run(FLOATS_HONEST.replace("float('nan')", "0.0"), FLOATS) == pytest.approx(6 / 7)


@pytest.mark.parametrize("forge", [
    "class Inf(float):\n    __eq__ = lambda self, other: True\n    __hash__ = float.__hash__\n"
    "def distance(graph, a, b):\n    return Inf(float('inf'))\ndef mean(xs):\n    return Inf(float('nan'))\n",
    "def distance(graph, a, b):\n    return Looks('inf')\ndef mean(xs):\n    return Looks('nan')\n",
])
def test_forged_inf_and_nan_score_0(forge):
    assert run(LIARS + forge, FLOATS[:3]) == 0.0


# ------------------------------------------------------------------------------------ ints over 4300 digits
BIG = ["assert power(2, 20000) == 2 ** 20000", "assert power(-3, 9001) == -3 ** 9001",
       "assert power(10, 4200) == 10 ** 4200", "assert factorial(2000) % 10 ** 9 == 0",
       "assert 10 ** 5735 < factorial(2000) < 10 ** 5736", "assert digits_of_factorial(2000) == 5736"]
BIG_HONEST = ("import math\ndef power(b, e):\n    return b ** e\ndef factorial(n):\n    return math.factorial(n)\n"
              "def digits_of_factorial(n):\n    return len(str(math.factorial(n)))\n")


def test_ints_over_4300_digits_cross_and_print_in_the_program():
    assert run(BIG_HONEST, BIG) == 1.0
    assert run(BIG_HONEST.replace("b ** e", "b ** e + 1"), BIG) == 0.5


def test_a_value_whose_repr_fits_the_cap_crosses():
    """The child's spelling is about as long as repr: 10,000 digits (a 30,000-byte repr) still fit in VALUE_BYTES."""
    program = "def digits(n):\n    return [i % 10 for i in range(n)]\n"
    assert len(repr([i % 10 for i in range(10000)])) == 30000
    assert run(program, ["assert len(digits(10000)) == 10000", "assert digits(10000)[-1] == 9"]) == 1


def test_a_forged_big_int_scores_0():
    assert run(LIARS + "def power(b, e):\n    return Equal(b ** e + 1)\n", BIG[:2]) == 0.0
    # A report that spells a big int in decimal (the child writes hex) is refused, not converted in quadratic time
    report = ("import os\nopen('report', 'w').write('[]\\n' + ('1' * 30000 + '\\n') * 2)\nos._exit(0)\n")
    assert literal(b"1" * 30000) is NOT_RUN
    assert run("def power(b, e):\n    return None\n" + report, BIG[:2]) == 0.0


# --------------------------------------------------------------------- iterators converted by the test
ITERATORS = ["assert list(evens(7)) == [0, 2, 4, 6]", "assert len(list(evens(5))) == 3",
             "assert set(upper(['a', 'b', 'a'])) == {'A', 'B'}", "assert sorted(upper(['b', 'a'])) == ['A', 'B']",
             "assert tuple(positive([-1, 2, 3])) == (2, 3)", "assert list(steps(3, 2)) == [2, 4, 6]",
             "assert sorted(evens(5), reverse=True) == [4, 2, 0]", "assert dict(pairs('ab')) == {0: 'a', 1: 'b'}",
             "assert frozenset(evens(3)) == frozenset({0, 2})", "assert list(evens(5))[1:] == [2, 4]",
             "assert sorted(set(upper(['b', 'a', 'b']))) == ['A', 'B']"]
ITERATORS_HONEST = ("def evens(n):\n    for i in range(n):\n        if i % 2 == 0:\n            yield i\n"
                    "def upper(words):\n    return map(str.upper, words)\n"
                    "def positive(xs):\n    return filter(lambda x: x > 0, xs)\n"
                    "def steps(n, k):\n    return range(k, n * k + 1, k)\n"
                    "def pairs(s):\n    return enumerate(s)\n")


def test_a_conversion_the_test_applies_runs_in_the_child():
    assert list(parse_test(ITERATORS[1])[1].values()) == ["list(evens(5))"]  # len runs here, on the list
    assert list(parse_test(ITERATORS[10])[1].values()) == ["sorted(set(upper(['b', 'a', 'b'])))"]
    assert run(ITERATORS_HONEST, ITERATORS) == 1.0
    odds = ITERATORS_HONEST.replace("i % 2 == 0", "i % 2")
    assert run(odds, ITERATORS) == pytest.approx(6 / 11)  # the 5 tests of evens fail


def test_an_unconverted_iterator_does_not_cross():
    """As in Python, a generator is not equal to the list of its items; nor does it cross for the trainer's len()."""
    assert run(ITERATORS_HONEST, ["assert evens(5) == [0, 2, 4]", "assert len(steps(3, 2)) == 3"]) == 0.0


@pytest.mark.parametrize("forge, test", [
    ("def evens(n):\n    return (Equal(0) for _ in range(n))\n", ITERATORS[0]),  # items whose __eq__ says yes
    ("def upper(words):\n    return [Hash('A'), Hash('B')]\n", ITERATORS[2]),  # items hashing as the right ones
    ("def evens(n):\n    return Long()\n", ITERATORS[1]),  # __len__ says 3, no item
    ("def steps(n, k):\n    return Long()\n", "assert len(steps(3, 2)) == 3"),
    ("def evens(n):\n    return Iterates([0, 2, 4, 6])\n", ITERATORS[0]),  # holds the items, iterates none
    ("def evens(n):\n    return Iterates([0, 2, 4, 6])\n", "assert evens(7) == [0, 2, 4, 6]"),
    ("import builtins\nbuiltins.list = lambda x: Equal(0)\ndef evens(n):\n    return []\n", ITERATORS[0]),
    ("def evens(n):\n    return Shows([9])\n", "assert evens(7) == [0, 2, 4, 6]"),  # iterates what it does not hold
    ("def evens(n):\n    return [Says('no')]\n", "assert evens(7) == ['ok']"),  # an item whose __repr__ lies
])
def test_a_forged_iterator_scores_0(forge, test):
    assert run(LIARS + forge, [test]) == 0.0


# ------------------------------------------------------------------ a program's function named like a builtin
SUM_TESTS = ["assert sum(10, 15) == 6", "assert sum(100, 150) == 93", "assert sum(4, 6) == 3"]
SUM = ("def sum(a, b):\n    total = 0\n    for i in range(1, min(a, b) + 1):\n"
       "        if a % i == 0 and b % i == 0:\n            total += i\n    return total\n")


def test_a_program_function_named_like_a_builtin_is_the_programs():
    assert [list(parse_test(t)[1].values()) for t in SUM_TESTS[:1]] == [["sum(10, 15)"]]
    assert run(SUM, SUM_TESTS) == 1.0
    assert run("def pow(a, b):\n    return a ** b\n", ["assert pow(2, 10) == 1024"]) == 1.0  # not one SAFE has
    assert run("", SUM_TESTS) == 0.0  # without one, the builtin sum(10, 15) raises, as in Python
    assert run(LIARS + "def sum(a, b):\n    return Equal(0)\n", SUM_TESTS) == 0.0


def test_a_builtin_the_program_defines_is_the_evaluators_where_the_test_names_the_programs_function():
    """Shadowing abs does not move the test's own check into the child, where the program would decide it (`def
    abs(x): return 0` would pass every `abs(f(x) - c) < eps`). A conversion does run there, as Python would run it
    (`sorted(pair(2))`, with the program's sorted if it has one): only its data comes back, which the program could
    have returned from pair itself."""
    shadow = "def abs(x):\n    return 0\ndef area(r):\n    return 0.0\n"
    tests = ["assert abs(area(2) - 12.566) < 1e-3", "assert abs(area(2)) == 0"]
    assert [list(parse_test(t)[1].values()) for t in tests] == [["area(2)"], ["area(2)"]]
    assert run(shadow, tests) == 0.5  # the evaluator's abs: |0 - 12.566| is not small; |0| is 0


# ---------------------------------------------------------------------------------- the tests' setup code
TREE = ("class Node:\n    def __init__(self, data):\n        self.data = data\n        self.left = self.right = None\n"
        "def height(node):\n    return 0 if node is None else 1 + max(height(node.left), height(node.right))\n")
SETUP = "root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)\nsingle = Node(7)\n"
TREE_TESTS = ["assert height(root) == 3", "assert height(single) == 1", "assert height(None) == 0"]


def test_the_tests_setup_code_runs_after_the_program_in_its_namespace():
    row = to_row({"prompt": "height", "tests": TREE_TESTS, "test_setup_code": SETUP})
    assert row["test_setup_code"] == SETUP
    assert run(TREE, TREE_TESTS, test_setup_code=SETUP) == 1.0
    assert run(TREE, TREE_TESTS) == pytest.approx(1 / 3)  # without it, root and single are not defined
    forge = TREE.replace("return 0 if node is None else", "return Equal(0)  #")
    assert run(LIARS + forge, TREE_TESTS, test_setup_code=SETUP) == 0.0


@pytest.mark.parametrize("setup, reason", [("root = Node(1", "test_setup_code must be Python code"),
                                           (["root = 1"], "test_setup_code must be Python code")])
def test_setup_code_that_cannot_run_is_refused_at_load(setup, reason):
    with pytest.raises(ValueError, match=reason):
        to_row({"prompt": "height", "tests": TREE_TESTS, "test_setup_code": setup})


# ------------------------------------------------------------------------------ what the parent reads back
def exactly_data(value) -> bool:
    """Built only of builtin types whose methods do not lie, as the parent must get whatever line it reads."""
    if type(value) in (type(None), bool, int, float, complex, str, bytes):
        return True
    if type(value) is dict:
        return all(exactly_data(k) and exactly_data(v) for k, v in value.items())
    return type(value) in (list, tuple, set, frozenset) and all(map(exactly_data, value))


@pytest.mark.parametrize("line", [
    b"frozenset([1, frozenset([2])])", b"{inf: set([nan])}", b"set([])", b"frozenset({})", b"[-inf, 0x1f, (1, )]",
    b"frozenset([[]])", b"set([set([1])])", b"set([1], key=2)", b"set(1, 2)", b"frozenset", b"Counter({'a': 1})",
    b"float('inf')", b"infinity", b"__import__('os')", b"(lambda: 1)()", b"inf.real", b"[nan][0]", b"set([1]) | set()",
    b"frozenset(x for x in [1])", b"{**{1: 2}}", b"b'\\x00'", b"...", b"-" * 20000 + b"1",
    b"frozenset([" * 150 + b"]) " * 150,
])
def test_a_report_line_reads_as_plain_data_or_not_at_all(line):
    value = literal(line)
    assert value is NOT_RUN or exactly_data(value) or value is Ellipsis
