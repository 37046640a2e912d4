"""A benchmark-shaped set of code problems, written for this project in the style of MBPP (a task, a reference
solution, three asserts, sometimes setup code for the tests): every row loads, and every reference scores 1."""
import pytest

from rewards import accuracy_rewards, to_row

# (prompt, reference solution, tests[, test_setup_code])
PROBLEMS = [
    ("Write a function to find the shared elements of two tuples.",
     "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n",
     ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))",
      "assert set(similar_elements((1, 2, 3, 4), (5, 4, 3, 7))) == set((3, 4))",
      "assert set(similar_elements((11, 12, 14, 13), (17, 15, 14, 13))) == set((13, 14))"]),
    ("Write a python function to identify non-prime numbers.",
     "import math\ndef is_not_prime(n):\n    if n < 2:\n        return True\n"
     "    return any(n % i == 0 for i in range(2, math.isqrt(n) + 1))\n",
     ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True", "assert is_not_prime(35) == True"]),
    ("Write a function to find the n largest integers from a list, in descending order.",
     "import heapq\ndef heap_queue_largest(nums, n):\n    return heapq.nlargest(n, nums)\n",
     ["assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 3) == [85, 75, 65]",
      "assert heap_queue_largest([25, 35, 22, 85, 14, 65, 75, 22, 58], 2) == [85, 75]",
      "assert heap_queue_largest([1], 1) == [1]"]),
    ("Write a function to count the most common words in a list, with their counts.",
     "from collections import Counter\ndef count_common(words):\n    return Counter(words).most_common(2)\n",
     ["assert count_common(['red', 'green', 'red', 'blue', 'red', 'green']) == [('red', 3), ('green', 2)]",
      "assert count_common(['a', 'b', 'a']) == [('a', 2), ('b', 1)]", "assert count_common([]) == []"]),
    ("Write a function to count the frequency of each character of a string.",
     "from collections import Counter\ndef char_frequency(s):\n    return Counter(s)\n",
     ["assert char_frequency('python') == {'p': 1, 'y': 1, 't': 1, 'h': 1, 'o': 1, 'n': 1}",
      "assert char_frequency('aab') == {'a': 2, 'b': 1}", "assert char_frequency('') == {}"]),
    ("Write a function to group words by their first letter.",
     "from collections import defaultdict\ndef group_by_letter(words):\n    groups = defaultdict(list)\n"
     "    for w in words:\n        groups[w[0]].append(w)\n    return groups\n",
     ["assert group_by_letter(['apple', 'bee', 'ant']) == {'a': ['apple', 'ant'], 'b': ['bee']}",
      "assert group_by_letter([]) == {}", "assert group_by_letter(['x']) == {'x': ['x']}"]),
    ("Write a function that maps each item of a list to the index where it first appears, in order.",
     "from collections import OrderedDict\ndef first_index(items):\n    seen = OrderedDict()\n"
     "    for i, item in enumerate(items):\n        seen.setdefault(item, i)\n    return seen\n",
     ["assert first_index('abca') == {'a': 0, 'b': 1, 'c': 2}", "assert list(first_index('ba')) == ['b', 'a']",
      "assert first_index([]) == {}"]),
    ("Write a python function to find the sum of common divisors of two given numbers.",
     "def sum(a, b):\n    total = 0\n    for i in range(1, min(a, b) + 1):\n"
     "        if a % i == 0 and b % i == 0:\n            total += i\n    return total\n",
     ["assert sum(10, 15) == 6", "assert sum(100, 150) == 93", "assert sum(4, 6) == 3"]),
    ("Write a function to compute a to the power b without the ** operator.",
     "def pow(a, b):\n    result = 1\n    for _ in range(b):\n        result *= a\n    return result\n",
     ["assert pow(3, 4) == 81", "assert pow(2, 3) == 8", "assert pow(5, 5) == 3125"]),
    ("Write a function that yields the even numbers below n.",
     "def even_numbers(n):\n    for i in range(n):\n        if i % 2 == 0:\n            yield i\n",
     ["assert list(even_numbers(10)) == [0, 2, 4, 6, 8]", "assert len(list(even_numbers(5))) == 3",
      "assert list(even_numbers(0)) == []"]),
    ("Write a function to upper-case each word of a list, lazily, with map.",
     "def upper_words(words):\n    return map(str.upper, words)\n",
     ["assert list(upper_words(['a', 'bc'])) == ['A', 'BC']", "assert set(upper_words(['a', 'a'])) == {'A'}",
      "assert sorted(upper_words(['b', 'a'])) == ['A', 'B']"]),
    ("Write a function to filter the positive numbers of a list.",
     "def positive_nums(nums):\n    return filter(lambda x: x > 0, nums)\n",
     ["assert tuple(positive_nums([-1, -2, 1, 2])) == (1, 2)", "assert list(positive_nums([3, 4, -5])) == [3, 4]",
      "assert list(positive_nums([-1])) == []"]),
    ("Write a function that returns the first n multiples of k.",
     "def multiples(k, n):\n    return range(k, k * n + 1, k)\n",
     ["assert list(multiples(3, 4)) == [3, 6, 9, 12]", "assert list(multiples(2, 1)) == [2]",
      "assert sorted(multiples(5, 2), reverse=True) == [10, 5]"]),
    ("Write a function that yields the first n Fibonacci numbers.",
     "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        yield a\n        a, b = b, a + b\n",
     ["assert list(fibonacci(7)) == [0, 1, 1, 2, 3, 5, 8]", "assert tuple(fibonacci(1)) == (0,)",
      "assert list(fibonacci(100))[-1] == 218922995834555169026"]),
    ("Write a function to find all unordered pairs of distinct items of a list.",
     "import itertools\ndef unique_pairs(items):\n"
     "    return {frozenset(p) for p in itertools.combinations(items, 2)}\n",
     ["assert unique_pairs([1, 2, 3]) == {frozenset({1, 2}), frozenset({1, 3}), frozenset({2, 3})}",
      "assert unique_pairs([1]) == set()", "assert len(unique_pairs(range(5))) == 10"]),
    ("Write a function returning the set of letters of a word, as a frozenset.",
     "def letter_set(word):\n    return frozenset(word.lower())\n",
     ["assert letter_set('Hello') == frozenset('helo')", "assert letter_set('') == frozenset()",
      "assert len(letter_set('aaa')) == 1"]),
    ("Write a function to find the shortest distance between two nodes of a weighted graph (inf if unreachable).",
     "import heapq\ndef shortest_path(graph, start, end):\n    dist = {start: 0}\n    queue = [(0, start)]\n"
     "    while queue:\n        d, node = heapq.heappop(queue)\n        if node == end:\n            return d\n"
     "        for nxt, w in graph.get(node, []):\n            if d + w < dist.get(nxt, float('inf')):\n"
     "                dist[nxt] = d + w\n                heapq.heappush(queue, (d + w, nxt))\n"
     "    return float('inf')\n",
     ["assert shortest_path({0: [(1, 4), (2, 1)], 2: [(1, 2)]}, 0, 1) == 3",
      "assert shortest_path({0: [(1, 1)]}, 0, 5) == float('inf')", "assert math.isinf(shortest_path({}, 1, 2))"]),
    ("Write a function to compute the mean of a list, nan for an empty one.",
     "def mean(nums):\n    return sum(nums) / len(nums) if nums else float('nan')\n",
     ["assert mean([1, 2, 3]) == 2.0", "assert math.isnan(mean([]))", "assert math.isclose(mean([0.1, 0.2]), 0.15)"]),
    ("Write a function to compute n factorial.",
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
     ["assert factorial(5) == 120", "assert factorial(2000) % 10 ** 9 == 0",
      "assert 10 ** 5735 < factorial(2000) < 10 ** 5736"]),
    ("Write a python function to count the digits of n factorial.",
     "import math\ndef factorial_digits(n):\n    return len(str(math.factorial(n)))\n",
     ["assert factorial_digits(5) == 3", "assert factorial_digits(2000) == 5736", "assert factorial_digits(0) == 1"]),
    ("Write a function to find the height of a binary tree.",
     "class Node:\n    def __init__(self, data):\n        self.data = data\n        self.left = None\n"
     "        self.right = None\n"
     "def max_height(node):\n    if node is None:\n        return 0\n"
     "    return 1 + max(max_height(node.left), max_height(node.right))\n",
     ["assert max_height(root) == 3", "assert max_height(root1) == 5", "assert max_height(root2) == 4"],
     "root = Node(1)\r\nroot.left = Node(2)\r\nroot.right = Node(3)\r\nroot.left.left = Node(4)\r\n"
     "root1 = Node(1)\r\nnode = root1\r\nfor i in range(4):\r\n    node.left = Node(i)\r\n    node = node.left\r\n"
     "root2 = Node(1)\r\nroot2.right = Node(2)\r\nroot2.right.right = Node(3)\r\nroot2.right.right.left = Node(4)\r\n"),
    ("Write a function to check whether a binary tree is balanced.",
     "class Node:\n    def __init__(self, data):\n        self.data = data\n        self.left = None\n"
     "        self.right = None\n"
     "def height(node):\n    return 0 if node is None else 1 + max(height(node.left), height(node.right))\n"
     "def is_tree_balanced(node):\n    if node is None:\n        return True\n"
     "    return abs(height(node.left) - height(node.right)) <= 1 and is_tree_balanced(node.left) and "
     "is_tree_balanced(node.right)\n",
     ["assert is_tree_balanced(root) == False", "assert is_tree_balanced(root1) == True",
      "assert is_tree_balanced(root2) == False"],
     "root = Node(1)\nroot.left = Node(2)\nroot.left.left = Node(3)\n"
     "root1 = Node(1)\nroot1.left = Node(2)\nroot1.right = Node(3)\n"
     "root2 = Node(1)\nroot2.left = Node(2)\nroot2.left.left = Node(3)\nroot2.left.left.left = Node(4)\n"),
    ("Write a function to reverse the order of the words of a string.",
     "def reverse_words(s):\n    return ' '.join(reversed(s.split()))\n",
     ["assert reverse_words('python program') == 'program python'", "assert reverse_words('java') == 'java'",
      "assert reverse_words('a b  c') == 'c b a'"]),
    ("Write a function to remove duplicates from a list, keeping the first occurrences in order.",
     "def remove_duplicates(items):\n    return list(dict.fromkeys(items))\n",
     ["assert remove_duplicates([1, 2, 1, 3, 2]) == [1, 2, 3]", "assert remove_duplicates([]) == []",
      "assert remove_duplicates(['a', 'a']) == ['a']"]),
    ("Write a function to build a dictionary from a list of keys and a list of values.",
     "def to_dict(keys, values):\n    return dict(zip(keys, values))\n",
     ["assert to_dict([1, 2], ['a', 'b']) == {1: 'a', 2: 'b'}", "assert to_dict([], []) == {}",
      "assert to_dict(['x'], [[1, 2]]) == {'x': [1, 2]}"]),
    ("Write a function to find the area of a circle.",
     "import math\ndef circle_area(r):\n    return math.pi * r * r\n",
     ["assert math.isclose(circle_area(10), 314.1592653589793, rel_tol=0.001)",
      "assert abs(circle_area(5) - 78.54) < 0.01", "assert round(circle_area(1), 2) == 3.14"]),
    ("Write a class Solution with a method two_sum(nums, target) returning the indices of two numbers adding to it.",
     "class Solution:\n    def two_sum(self, nums, target):\n        seen = {}\n        for i, n in enumerate(nums):\n"
     "            if target - n in seen:\n                return [seen[target - n], i]\n            seen[n] = i\n",
     ["assert Solution().two_sum([2, 7, 11, 15], 9) == [0, 1]", "assert Solution().two_sum([3, 2, 4], 6) == [1, 2]",
      "assert Solution().two_sum([1, 2], 7) is None"]),
    ("Write a function to flatten a nested list.",
     "def flatten(items):\n    out = []\n    for item in items:\n"
     "        out.extend(flatten(item) if isinstance(item, list) else [item])\n    return out\n",
     ["assert flatten([0, 10, [20, 30], 40, [[50]]]) == [0, 10, 20, 30, 40, 50]", "assert flatten([]) == []",
      "assert flatten([[1, [2]], 3]) == [1, 2, 3]"]),
    ("Write a function to check whether a string is a palindrome.",
     "def is_palindrome(s):\n    return s == s[::-1]\n",
     ["assert is_palindrome('level')", "assert not is_palindrome('python')", "assert is_palindrome('') is True"]),
    ("Write a function to append a tuple to a list, returning a tuple: the tuple's items first.",
     "def add_tuple(items, tup):\n    return tup + tuple(items)\n",
     ["assert add_tuple([5, 6, 7], (9, 10)) == (9, 10, 5, 6, 7)", "assert add_tuple([], (1,)) == (1,)",
      "assert isinstance(add_tuple([1], ()), tuple)"]),
    ("Write a function to sort a list of pairs by their second item.",
     "def sort_by_second(pairs):\n    return sorted(pairs, key=lambda p: p[1])\n",
     ["assert sort_by_second([(1, 3), (2, 1), (3, 2)]) == [(2, 1), (3, 2), (1, 3)]",
      "assert sort_by_second([]) == []", "assert sort_by_second([('a', 0)])[0][0] == 'a'"]),
    ("Write a function to count each word's letters, as a dictionary of counters.",
     "from collections import Counter\ndef letter_counts(words):\n    return {w: Counter(w) for w in words}\n",
     ["assert letter_counts(['ab', 'aa']) == {'ab': {'a': 1, 'b': 1}, 'aa': {'a': 2}}",
      "assert letter_counts([]) == {}", "assert letter_counts(['x'])['x']['x'] == 1"]),
    ("Write a function to encode a string as UTF-8 bytes.",
     "def to_bytes(s):\n    return s.encode('utf-8')\n",
     ["assert to_bytes('abc') == b'abc'", "assert to_bytes('é') == b'\\xc3\\xa9'", "assert len(to_bytes('')) == 0"]),
    ("Write a function to find the minimum and maximum of a list, as a tuple.",
     "def min_max(nums):\n    return (min(nums), max(nums))\n",
     ["assert min_max([3, 1, 2]) == (1, 3)", "assert min_max([5]) == (5, 5)",
      "assert min_max([-1.5, 2]) == (-1.5, 2)"]),
    ("Write a function to convert a number to its binary string, without the 0b prefix.",
     "def to_binary(n):\n    return bin(n)[2:]\n",
     ["assert to_binary(5) == '101'", "assert to_binary(0) == '0'", "assert int(to_binary(255), 2) == 255"]),
    ("Write a function to find the unique items of a list that appear an odd number of times.",
     "from collections import Counter\ndef odd_items(items):\n"
     "    return {x for x, n in Counter(items).items() if n % 2}\n",
     ["assert odd_items([1, 1, 2, 3, 3, 3]) == {2, 3}", "assert odd_items([]) == set()",
      "assert sorted(odd_items('abca')) == ['b', 'c']"]),
]


def rows() -> list[dict]:
    """Each problem as a dataset row, through the loader's checks (to_row), with its reference as the completion."""
    made = []
    for prompt, solution, tests, *setup in PROBLEMS:
        raw = {"prompt": prompt, "tests": tests} | ({"test_setup_code": setup[0]} if setup else {})
        made.append((f"<think>ok</think><answer>\n```python\n{solution}```\n</answer>", to_row(raw)))
    return made


def test_the_set_is_benchmark_shaped():
    assert len(PROBLEMS) >= 30 and all(len(problem[2]) == 3 for problem in PROBLEMS)


def test_every_reference_solution_scores_1():
    completions, made = zip(*rows())
    assert accuracy_rewards(list(completions), list(made)) == [1.0] * len(PROBLEMS)


@pytest.mark.parametrize("index", range(0, len(PROBLEMS), 4))
def test_a_wrong_solution_scores_less(index):
    """Every fourth problem, its reference with every return replaced by None: the tests can fail."""
    completion, row = rows()[index]
    assert accuracy_rewards([completion.replace("return ", "return None and ")], [row]) != [1.0]
