"""The code reward and its sandbox: right programs pass, and hostile ones score 0 (or their honest partial score),
end within the timeout plus a small bound, and leave this test process as it was."""
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rewards import accuracy_rewards, code_reward, extract_program, parse_test
from sandbox import VALUE_BYTES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 2.0
SLACK = 3.0  # seconds beyond the timeout that a child may take to be killed and cleaned up
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-4, 4) == 0", "assert add(10, -3) == 7"]
ADD = "def add(a, b):\n    return a + b\n"


def answer(program: str) -> str:
    return f"<think>plan</think><answer>\n```python\n{program}```\n</answer>"


def run(program: str, tests=ADD_TESTS, timeout=TIMEOUT) -> float:
    """The reward of a program, checking that it ended in time and left no child process behind."""
    start = time.perf_counter()
    reward = code_reward(answer(program), tests, timeout=timeout)
    assert time.perf_counter() - start < timeout + SLACK
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of ours is left, running or unreaped
    return reward


@pytest.mark.parametrize("program, expected", [
    (ADD, 1.0),
    ("def add(a, b):\n    return a - b\n", 0.0),
    ("def add(a, b):\n    return 3\n", 1 / 3),
    ("import math, collections, itertools, functools, heapq, fractions, decimal, random, json\n" + ADD, 1.0),
    ("if __name__ == '__main__':\n    input()\n" + ADD, 1.0),  # runs as a module: the main block does not
    ("def add(a, b):\n    return float(a + b)\n", 1.0),  # 3.0 == 3, as in Python's own assert
    ("def add(a, b):\n    return str(a + b)\n", 0.0),
    ("def add(a, b):\n    if a == 10:\n        raise ValueError\n    return a + b\n", 2 / 3),
    ("def add(a, b):\n    return a +\n", 0.0),  # a syntax error
])
def test_the_reward_is_the_fraction_of_tests_passed(program, expected):
    assert run(program) == pytest.approx(expected)


def test_each_test_form_is_checked_here(tmp_path):
    program = "def f(x):\n    return [x, x] if x else None\n"
    tests = ["assert f(1) == [1, 1]", "assert [2, 2] == f(2)", "assert f(0) is None", "assert f(3) != [3]",
             "assert f(1)", "assert not f(0)", "assert len(f(5)) > 1", "assert f(1) == [1]"]
    assert run(program, tests) == 7 / 8


@pytest.mark.parametrize("test", ["add(1, 2) == 3", "assert True\nassert False", "import os",
                                  "assert add(1, 2) == add(2, 1)"])
def test_unsupported_tests_are_refused_up_front(test):
    with pytest.raises(ValueError, match="test"):
        parse_test(test)


@pytest.mark.parametrize("completion, program", [
    ("<answer>```python\nx = 1\n```</answer>", "x = 1\n"),
    ("<answer>x = 1</answer>", "x = 1"),
    ("<answer>```\na = 1\n```\ntext\n```py\nb = 2\n```</answer>", "a = 1\n\nb = 2\n"),
    ("<think>x = 1</think>", None),
])
def test_extract_program(completion, program):
    assert extract_program(completion) == program


# -------------------------------------------------------------------------------------------- hostile programs


def test_an_infinite_loop_is_killed_at_the_timeout():
    assert run("while True:\n    pass\n" + ADD) == 0.0


def test_an_infinite_loop_in_one_test_keeps_the_tests_before_it():
    program = "def add(a, b):\n    while a == 10:\n        pass\n    return a + b\n"
    assert run(program) == pytest.approx(2 / 3)


def test_a_fork_bomb_cannot_fork():
    assert run("import os\nwhile True:\n    os.fork()\n" + ADD) == 0.0
    assert run("import threading\nthreading.Thread(target=print).start()\n" + ADD) == 0.0
    assert run("import subprocess\nsubprocess.run(['true'])\n" + ADD) == 0.0


def test_a_10_gb_allocation_fails():
    assert run("x = bytearray(10 * 2**30)\n" + ADD) == 0.0


def test_no_file_outside_the_temp_dir_can_be_written_or_read(tmp_path):
    target = tmp_path / "escaped.txt"
    assert run(f"open({str(target)!r}, 'w').write('x')\n" + ADD) == 0.0
    assert not target.exists()
    secret = tmp_path / "answers.jsonl"  # say, the dataset with the expected values
    secret.write_text("3")
    assert run(f"open({str(secret)!r}).read()\n" + ADD) == 0.0
    assert run("open('/etc/hostname').read()\n" + ADD) == 0.0
    assert run("open('scratch.txt', 'w')\n" + ADD) == 0.0  # no new files, even in its own temp dir
    assert run("import os\nos.mkdir('d')\n" + ADD) == 0.0
    assert run("import os\nprint(os.listdir('.'))\n" + ADD) == 1.0  # its own dir it can read


def test_no_file_metadata_can_be_changed_outside(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    os.chmod(victim, 0o644)
    before = os.stat(victim)
    for change in [f"os.chmod({str(victim)!r}, 0o4777)", f"os.utime({str(victim)!r}, (0, 0))",
                   f"os.setxattr({str(victim)!r}, 'user.x', b'1')"]:
        assert run(f"import os\n{change}\n" + ADD) == 0.0
    after = os.stat(victim)
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


def test_the_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("GRPO_TEST_SECRET", "hunter2")
    program = "import os\ndef secret():\n    return os.environ.get('GRPO_TEST_SECRET')\n"
    assert run(program, ["assert secret() == 'hunter2'"]) == 0.0
    assert run("def secret():\n    return 'hunter2'\n", ["assert secret() == 'hunter2'"]) == 1.0  # could pass


def test_no_connection_to_a_local_socket():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port})).sendall(b'x')\n" + ADD
        assert run(program) == 0.0
        udp = f"import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))\n"
        assert run(udp + ADD) == 0.0
        with pytest.raises(socket.timeout):
            server.accept()


@pytest.mark.parametrize("stop", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit\n"])
def test_stopping_before_the_tests_passes_nothing(stop):
    assert run("def add(a, b):\n    return a + b\n" + stop) == 0.0


def test_printing_or_writing_what_success_looks_like_passes_nothing():
    forged = "\n".join(f"print({line!r})" for line in ["[0, \"3\"]", "all tests passed", "OK"])
    assert run(forged + "\ndef add(a, b):\n    return 0\nimport os\nos._exit(0)\n") == 0.0
    # The report is a file in the temp dir, so the program can write it; but it holds values, not verdicts, and the
    # expected values never reach the child: a forged report must guess them.
    report = "open('report', 'w').write('[]\\n' + 'True\\n' * 3)\nimport os\nos._exit(0)\n"
    assert run("def add(a, b):\n    return 0\n" + report) == 0.0


def test_a_signal_to_the_parent_is_not_delivered():
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
    try:
        program = "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)\n" + ADD
        assert run(program) == 0.0
        group = "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGUSR1)\n" + ADD
        assert run(group) == 0.0
        sigio = ("import fcntl, os, signal\nr, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())\n"
                 "fcntl.fcntl(r, 10, signal.SIGUSR1)\nfcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)\nos.write(w, b'x')\n")
        assert run(sigio + ADD) == 0.0  # F_SETOWN + F_SETSIG: SIGIO aimed at the parent
        time.sleep(0.1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []


def test_deep_recursion_only_ends_the_child():
    program = "import sys\nsys.setrecursionlimit(10**9)\ndef add(a, b):\n    return add(a, b)\n"
    assert run(program) == 0.0
    assert run("def add(a, b):\n    return add(a, b)\n") == 0.0  # a RecursionError fails each test


def test_100_mb_of_output_is_dropped_and_capped():
    assert run("print('x' * 100_000_000)\n" + ADD) == 1.0  # stdout goes nowhere: it neither helps nor hurts
    assert run("open('big.txt', 'w').write('x' * 100_000_000)\n" + ADD) == 0.0  # files are capped at 1 MiB
    assert run("def add(a, b):\n    return 'x' * 100_000_000\n") == 0.0  # so is the report


def test_patching_the_harness_or_assert_passes_nothing():
    program = ("import builtins, json, operator\n"
               "builtins.repr = lambda value: 'True'\n"
               "json.dumps = lambda value: '[0, \"True\"]'\n"
               "operator.eq = lambda a, b: True\n"
               "builtins.AssertionError = type('Never', (Exception,), {})\n"
               "class Anything(int):\n    def __eq__(self, other):\n        return True\n"
               "def add(a, b):\n    return Anything(0)\n")
    assert run(program) == 0.0


def test_a_batch_of_programs_is_scored_in_order():
    rows = [{"task": "code", "tests": ADD_TESTS, "timeout": TIMEOUT}] * 8
    completions = [answer(ADD if i % 2 else "def add(a, b):\n    return None\n") for i in range(8)]
    assert accuracy_rewards(completions, rows) == [0.0, 1.0] * 4


def test_the_parent_limits_cannot_be_changed():
    import resource
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = (before[0] - 1, before[1])  # were it to work, harmless here
    assert run(f"import os, resource\nresource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, {lower})\n" + ADD) == 0.0
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def test_nothing_outlives_the_child():
    segments = open("/proc/sysvipc/shm").read()
    program = "import ctypes\nassert ctypes.CDLL(None).shmget(0, 1 << 20, 0o1600) >= 0\n" + ADD
    assert run(program) == 0.0
    assert open("/proc/sysvipc/shm").read() == segments
    assert run("import os\nfor _ in range(1200):\n    os.mkdir('d')\n    os.chdir('d')\n" + ADD) == 0.0


def test_a_hostile_report_is_read_quickly():
    colliding = "{" + ", ".join(str((2**61 - 1) * i) for i in range(1, 40000)) + "}"  # every hash is 0
    for value in [colliding, "{" + colliding[1:3000] + "}", "[" + "0," * 500_000 + "]", "(" * 100_000]:
        report = f"import os\nopen('report', 'w').write('[]\\n' + {value!r} + '\\n')\nos._exit(0)\n"
        assert run("def add(a, b):\n    return None\n" + report) == 0.0


def test_reading_a_report_prints_no_warnings():
    """pytest resets warning filters inside tests, so this runs where the trainer would: in a process of its own."""
    code = ("import sandbox\nassert sandbox.literal(b'[0x1for]') is sandbox.NOT_RUN\n"
            "assert sandbox.literal(rb'\"\\d\"') == '\\\\d'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stderr == ""


def test_tests_against_builders_are_checked_here():
    tests = ["assert set(common([1, 4, 5], [4, 5, 6])) == set((4, 5))", "assert big() == float('inf')"]
    honest = "def common(a, b):\n    return [x for x in a if x in b]\ndef big():\n    return 1e999\n"
    assert run(honest, tests) == 1.0  # inf crosses by name (sandbox.spell); set() runs in the child
    rigged = ("import builtins\nbuiltins.set = lambda *a: 0\nbuiltins.float = lambda *a: 0\n"
              "def common(a, b):\n    return 0\ndef big():\n    return 0\n")
    assert run(rigged, tests) == 0.0


def probe(call: str) -> str:
    """A program whose attempt() gives the errno its call failed with (0 if it worked): the sandbox must say EPERM."""
    body = "\n".join("        " + line for line in call.splitlines())
    return ("import ctypes, errno, fcntl, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "def attempt():\n    try:\n" + body + "\n    except OSError as e:\n        return e.errno\n    return 0\n")


def syscall(number: int, *args) -> str:
    return f"if libc.syscall({number}, {', '.join(map(str, args))}) < 0:\n    raise OSError(ctypes.get_errno(), '')"


@pytest.mark.parametrize("name, call", [
    ("chown, which would clear a setuid bit", "os.chown(VICTIM, -1, 0)"),
    ("file_setattr (Linux 6.17)", syscall(469, -100, "VICTIM.encode()", 0, 0, 0)),
    ("ioctl FS_IOC_GETFLAGS, as a stand-in for SETFLAGS",
     "fcntl.ioctl(os.open(os.__file__, os.O_RDONLY), 0x80086601, b'\\0' * 8)"),
    ("a lease that would stall other processes opening the file",
     "fcntl.fcntl(os.open(os.__file__, os.O_RDONLY), 1024, fcntl.F_RDLCK)"),
    ("flock", "fcntl.flock(os.open(os.__file__, os.O_RDONLY), fcntl.LOCK_EX)"),
    ("fallocate past RLIMIT_FSIZE", "fd = os.open('report', os.O_WRONLY)\n" + syscall(285, "fd", 1, 0, 20 << 30)),
    ("getxattr", "os.getxattr(VICTIM, 'user.x')"),
    ("inotify", syscall(294, 0)),
    ("shmctl on a segment that exists", syscall(31, "SEGMENT", 0, 0)),  # IPC_RMID
])
def test_calls_a_file_owner_could_make_fail(name, call, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    os.chmod(victim, 0o4755)
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget(0, 4096, 0o1600)
    try:
        program = probe(call).replace("VICTIM", repr(str(victim))).replace("SEGMENT", str(segment))
        assert run(program, ["assert attempt() == 1"]) == 1.0, name  # EPERM
    finally:
        libc.shmctl(segment, 0, None)
    assert os.stat(victim).st_mode & 0o7777 == 0o4755


@pytest.mark.parametrize("name, call", [
    ("memfd_create", "os.memfd_create('x')"),
    ("memfd_secret", syscall(447, 0)),
    ("an unnamed file in the temp dir (O_TMPFILE)", "os.open('.', os.O_TMPFILE | os.O_RDWR)"),
    ("openat2, whose flags seccomp cannot see", syscall(437, -100, "b'.'", 0, 0)),
    ("perf_event_open", syscall(298, 0, 0, -1, -1, 0)),
    ("userfaultfd (user-mode faults only: allowed to anyone)", syscall(323, 1)),
    ("io_setup", "ctx = ctypes.c_ulong()\n" + syscall(206, 1, "ctypes.byref(ctx)")),
    ("sync, which would flush every disk of the machine", syscall(162)),
])
def test_calls_that_hold_memory_or_disk_or_reach_the_kernel_fail(name, call):
    assert run(probe(call), ["assert attempt() == 1"]) == 1.0, name  # EPERM


def test_the_probe_can_see_a_call_that_works():
    assert run(probe("os.getpid()"), ["assert attempt() == 0"]) == 1.0


def test_a_report_of_many_slow_lines_costs_little():
    colliding = "{" + ", ".join(f"{-1000003 * b}+{b}j" for b in range(1, 3000)) + "}"[:VALUE_BYTES]
    report = ("import os\nline = " + repr(colliding[:VALUE_BYTES - 1] + "}") + " + '\\n'\n"
              "open('report', 'w').write('[]\\n' + line * 30)\nos._exit(0)\n")
    assert run("def add(a, b):\n    return None\n" + report) == 0.0


def test_a_trainer_with_many_open_files_still_scores():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: cannot open 1100 files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert run(ADD) == 1.0  # the child's pidfd is above 1024, where select() cannot go
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ----------------------------------------------------------------- tests split between the child and the parent
# The child evaluates only the program's values (f(2), Solution().solve(...), f(2).strip()) and sends back literals;
# the rest of each test is evaluated here. These are the forms real code datasets (MBPP) use.

FORMS = ["assert math.isclose(area(2), 12.566370614359172)", "assert abs(area(2) - 12.566) < 1e-3",
         "assert square(3) - 9 == 0", "assert square(1) == 1 + 0", "assert 1 < square(2) < 5",
         "assert square(2) in (3, 4)", "assert round(area(1), 2) == 3.14", "assert sorted(pair(2)) == [2, 4]",
         "assert math.isclose(area(1), 3.14159, rel_tol=1e-3) and square(2) == 4", "assert square(3) >= 3 ** 2"]
AREA = ("import math\ndef area(r):\n    return math.pi * r * r\n"
        "def square(x):\n    return x * x\ndef pair(x):\n    return (x * 2, x)\n")
# Every operator and builtin a test could run in the child, rigged to say "pass"; the values it returns are 0.
RIGGED = ("import builtins, math\n"
          "class Anything(float):\n"
          "    def __eq__(self, other):\n        return True\n"
          "    __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = __bool__ = __eq__\n"
          "    def __sub__(self, other):\n        return Anything(0)\n"
          "    __add__ = __radd__ = __rsub__ = __mul__ = __abs__ = __round__ = __sub__\n"
          "    __hash__ = float.__hash__\n"
          "math.isclose = lambda *a, **k: True\n"
          "builtins.abs = builtins.round = builtins.sorted = lambda *a, **k: Anything(0)\n"
          "def area(r):\n    return Anything(0)\nsquare = area\ndef pair(x):\n    return Anything(0)\n")


def test_numeric_tests_are_checked_here_and_cannot_be_rigged():
    assert run(AREA, FORMS) == 1.0
    assert run(AREA.replace("x * x", "x + x"), FORMS) == 0.7  # square is wrong at 1 and 3, right at 2
    assert run(RIGGED, FORMS) == 0.0


@pytest.mark.parametrize("test, sent", [
    ("assert abs(area(2) - 12.566) < 1e-6", ["area(2)"]),
    ("assert math.isclose(f(1), 0.5, rel_tol=1e-9)", ["f(1)"]),
    ("assert 1 < f(2) < 4", ["f(2)"]),
    ("assert len(f('ab').strip()) == 2", ["f('ab').strip()"]),  # a method of the program's value: in the child
    ("assert Solution().solve([2, 7], 9) == [0, 1]", ["Solution().solve([2, 7], 9)"]),
    ("assert f(g(1) + 2)[0] - f(0)[1] == 4", ["f(g(1) + 2)[0]", "f(0)[1]"]),  # a program value's inputs go along
])
def test_the_child_is_sent_only_the_programs_values(test, sent):
    assert list(parse_test(test)[1].values()) == sent


@pytest.mark.parametrize("test, reason", [
    ("assert f(1) == 10 ** 10 ** 10", "too large"),
    ("assert f(1) == [0] * 10 ** 9", "too large"),
    ("assert f(1) == [[0] * 60000] * 60000", "too large"),
    ("assert f(1) == 1 << 10 ** 10", "too large"),
    ("assert f(1) == 'x' * 60000 + 'x' * 60000", "too large"),  # each part fits, the sum does not
    ("assert f(1) == '%*d' % (10 ** 9, 1)", "formatting"),
    ("assert f(1) == 1 / 0", "division by zero"),
    ("assert str(f(1)).strip() == '1'", "methods only on the program's values"),
    ("assert sorted(f(1), key=len) == []", "no keyword"),
    ("assert [x for x in f(1)] == []", "ListComp is not evaluated"),
    ("assert f(1) == f(2)", "a side computed without the program"),
    ("assert len([1]) == 1", "must use the program"),
    pytest.param("assert f(1) == " + "-" * 100_000 + "1", "one assert statement", id="deep nesting"),
])
def test_a_test_that_cannot_be_checked_here_is_refused_with_the_reason(test, reason):
    with pytest.raises(ValueError, match=reason):
        parse_test(test)


def test_a_refused_test_is_reported_at_its_file_and_line(tmp_path):
    from rewards import DataError, load_rows
    rows = [{"prompt": "p", "tests": ["assert f(1) == 1"]}, {"prompt": "p", "tests": ["assert f(1) == 10 ** 10 ** 10"]}]
    (tmp_path / "code.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=r"code\.jsonl:2: the test .* cannot be checked: .* too large"):
        load_rows(str(tmp_path / "code.jsonl"))


def test_values_from_the_child_cannot_make_the_parent_work_long():
    program = "def f(x):\n    return 'x' * 30_000 if x else [0] * 5_000\n"
    tests = ["assert f(1) * 10 ** 6 == ''", "assert [f(1)] * 10 ** 5 == []", "assert set(f(0) * 10 ** 4) == set()",
             "assert round(f(0)[0], -10 ** 9) == 0", "assert f(1) + f(1) != 'x'"]
    assert run(program, tests) == 0.2  # the last holds; the others are refused while they run, not computed


# ------------------------------------------------------------------ memory and disk the rlimits do not count
HOLD = ("import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.mmap.restype = ctypes.c_void_p\n"
        "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]\n"
        "for _ in range(1024):  # 1 MiB a file, each held by a one-page mapping after its descriptor is closed\n"
        "    try:\n        fd = OPEN\n        assert fd >= 0\n        os.write(fd, b'x' * (1 << 20))\n"
        "    except (OSError, AssertionError):\n        break\n    libc.mmap(None, 4096, 1, 1, fd, 0)\n"
        "    os.close(fd)\ntime.sleep(60)  # holding it all until killed\n")


def peak_growth(work, measure) -> tuple:
    """work()'s result, and the largest growth of measure() seen (every 20 ms) while it ran in a thread."""
    import threading
    before, peak, result = measure(), [0], []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    while thread.is_alive():
        peak[0] = max(peak[0], measure() - before)
        time.sleep(0.02)
    thread.join()
    return result[0], peak[0]


def shared_memory_mib() -> int:
    """The RAM held in memory files and tmpfs, system-wide (/proc/meminfo's Shmem)."""
    return next(int(line.split()[1]) >> 10 for line in open("/proc/meminfo") if line.startswith("Shmem:"))


@pytest.mark.parametrize("open_call", ["libc.memfd_create(b'x', 0)", "os.memfd_create('x')"])
def test_memory_files_cannot_hold_ram_past_the_memory_limit(open_call):
    program = HOLD.replace("OPEN", open_call) + ADD
    score, held = peak_growth(lambda: code_reward(answer(program), ADD_TESTS, timeout=3, memory_mb=128),
                              shared_memory_mib)
    assert score == 0.0 and held < 64, f"the child held {held} MiB of RAM beyond RLIMIT_AS (128 MiB)"


SCENARIO = """
import json, os, subprocess, sys, tempfile, threading, time
from rewards import accuracy_rewards, code_reward
disk, (hostile_program, honest_program, TESTS) = sys.argv[1], json.loads(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", disk], check=True)  # a small disk of our own
tempfile.tempdir = disk
used = lambda: (lambda s: (s.f_blocks - s.f_bfree) * s.f_frsize >> 20)(os.statvfs(disk))
def score(completion):
    try:
        return code_reward(completion, TESTS, timeout=4)
    except Exception as e:
        return repr(e)
result, peak = {}, 0
hostile = threading.Thread(target=lambda: result.update(hostile=score(hostile_program)))
hostile.start()
start = time.time()
while time.time() - start < 1.5:  # the hostile program fills what it can, then waits for its timeout
    peak = max(peak, used())
    time.sleep(0.02)
result["sibling"] = score(honest_program)  # an honest program beside it
hostile.join()
result.update(peak_mib=peak, left=os.listdir(disk))
with open(os.path.join(disk, "filler"), "wb") as f:  # a full disk: no room for an honest program's job
    try:
        while True:
            f.write(b"x" * (1 << 16))
            f.flush()
    except OSError:
        pass
rows = [{"task": "code", "tests": TESTS}, {"task": "math", "answer": "3"}]
try:
    result["full"] = accuracy_rewards([honest_program, "<answer>3</answer>"], rows)
except Exception as e:
    result["full"] = repr(e)
result["left_full"] = os.listdir(disk)
tempfile.tempdir = os.path.join(disk, "gone")  # no temp dir at all
result["no_dir"] = score(honest_program)
print(json.dumps(result))
"""


def test_a_program_cannot_fill_the_disk_and_a_full_disk_costs_only_a_score(tmp_path):
    """On a 16 MiB tmpfs of its own (a private mount namespace, so nothing leaks if the test dies): unnamed files
    (O_TMPFILE, held by one-page mappings) fill nothing, a sibling still scores, and when the disk is full or the temp
    dir missing an honest program scores 0 and the batch goes on."""
    hostile = answer(HOLD.replace("OPEN", "os.open('.', os.O_TMPFILE | os.O_RDWR)") + ADD)
    unshare = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    done = subprocess.run(unshare + [sys.executable, "-c", SCENARIO, str(tmp_path),
                                     json.dumps([hostile, answer(ADD), ADD_TESTS])],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["hostile"] == 0.0 and result["peak_mib"] < 4, result
    assert result["sibling"] == 1.0 and result["left"] == [], result
    assert result["full"] == [0.0, 1.0] and result["left_full"] == ["filler"], result
    assert result["no_dir"] == 0.0, result


# --------------------------------------------------------------------- the parent's work, bounded by the tests
FLOODS = ["\\n" * (1 << 20), "[\\n" * (1 << 19)]  # a 1 MiB report of empty lines, and one of junk lines


def test_a_flooded_report_costs_the_parent_little_and_no_sibling_its_score():
    flood = ("import os\nfor name in os.listdir('.'):  # the report, whatever its name\n"
             "    if name != 'job.json':\n        open(name, 'w').write('{}')\nos._exit(0)\n")
    rows = [{"task": "code", "tests": ADD_TESTS, "timeout": 0.5}] * 4
    start = time.perf_counter()
    assert accuracy_rewards([answer(ADD)] * 2, rows[:2], workers=2) == [1.0, 1.0]
    honest = time.perf_counter() - start
    batch = [answer(flood.format(FLOODS[0])), answer(ADD), answer(flood.format(FLOODS[1])), answer(ADD)]
    start = time.perf_counter()
    assert accuracy_rewards(batch, rows, workers=2) == [0.0, 1.0, 0.0, 1.0]
    assert time.perf_counter() - start < 3 * honest + 1.5  # about the honest time: the floods are not parsed


# -------------------------------------------------------------------------------- fail-closed, and its switch
WITHOUT_LANDLOCK = """
import ctypes, json, sys
# A seccomp filter on this process and every child it starts: landlock_create_ruleset (444 on x86_64 and aarch64)
# fails with ENOSYS, so to them this kernel has no Landlock. Outside the sandbox: a program inside cannot set it.
class Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]
code = [(0x20, 0, 0, 0), (0x15, 0, 1, 444), (0x06, 0, 0, 0x50000 | 38), (0x06, 0, 0, 0x7FFF0000)]
libc = ctypes.CDLL(None)
libc.prctl(38, 1, 0, 0, 0)
assert libc.prctl(22, 2, ctypes.byref(Program(len(code), (Instruction * len(code))(*code))), 0, 0) == 0
import sandbox
from rewards import code_reward
outside, program = sys.argv[1], sys.argv[2]
result = {"missing": sandbox.missing_layers()}
try:
    code_reward(program, ["assert leak() == 'hunter2'"])
except sandbox.SandboxError as e:
    result["refused"] = str(e)
probe = sandbox.missing_layers
sandbox.missing_layers = lambda: ()  # a parent that did not check: the child still refuses to run the program
result["unchecked"] = code_reward(program, ["assert leak() == 'hunter2'"])
result["written_unchecked"] = __import__("os").path.exists(outside)
sandbox.missing_layers = probe
sandbox.require_layers(weak_ok=True)  # the user accepts weaker isolation
result["weak"] = code_reward(program, ["assert leak() == 'hunter2'"])
result["written_weak"] = __import__("os").path.exists(outside)
print(json.dumps(result))
"""


def test_without_landlock_the_code_reward_refuses_unless_weaker_isolation_is_accepted(tmp_path):
    secret, outside = tmp_path / "answers.jsonl", tmp_path / "escaped.txt"
    secret.write_text("hunter2")
    program = answer(f"open({str(outside)!r}, 'w').write('x')\ndef leak():\n    return open({str(secret)!r}).read()\n")
    done = subprocess.run([sys.executable, "-c", WITHOUT_LANDLOCK, str(outside), program], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["missing"] == ["landlock"]
    assert "landlock" in result["refused"] and "--allow-weak-sandbox" in result["refused"]
    assert result["unchecked"] == 0.0 and not result["written_unchecked"]  # the child ran nothing
    assert "warning: the code sandbox runs without landlock" in done.stderr
    assert result["weak"] == 1.0 and result["written_weak"]  # accepted: it runs, and is as weak as the README says


def test_the_trainer_checks_the_sandbox_before_any_step(model_dir, tmp_path, monkeypatch, capsys):
    import grpo
    import sandbox
    monkeypatch.setattr(sandbox, "missing_layers", lambda: ("seccomp",))
    monkeypatch.setattr(sandbox, "accepted", set())
    args = ["--model", model_dir, "--data", os.path.join(ROOT, "data", "examples", "code.jsonl"), "--steps", "1",
            "--G", "2", "--prompts-per-step", "1", "--max-new-tokens", "4", "--save-every", "0"]
    with pytest.raises(SystemExit, match="grpo.py: error: the code sandbox cannot apply seccomp"):
        grpo.main(args + ["--out", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()  # before the model loads, let alone a step
    grpo.main(args + ["--out", str(tmp_path / "weak"), "--allow-weak-sandbox"])
    assert "warning: the code sandbox runs without seccomp" in capsys.readouterr().err
    assert (tmp_path / "weak" / "metrics.jsonl").exists()


# ------------------------------------------------------------------------------------------------ the extras


def test_a_crashing_child_leaves_no_core_dump_for_any_handler():
    program = "import ctypes\ndef dumpable():\n    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"  # PR_GET_DUMPABLE
    assert run(program, ["assert dumpable() == 0"]) == 1.0


def test_the_seccomp_program_refuses_a_jump_past_8_bits(tmp_path):
    code = ("import sandbox, ctypes\nsandbox.FORBIDDEN_SYSCALLS.update({f'x{n}': (n, n) for n in range(1000, 1300)})\n"
            "try:\n    sandbox.forbid_syscalls(ctypes, ctypes.CDLL(None, use_errno=True), '')\n"
            "except AssertionError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "a BPF jump is 8 bits" in done.stdout, done.stderr


def test_a_value_that_fails_to_read_costs_that_value_only():
    """1e400+1j overflows when ast.literal_eval builds it: that value is lost, the other tests still count."""
    big = "class Big:\n    def __repr__(self):\n        return '1' + '0' * 400 + '+1j'\n"
    assert run(big + "def add(a, b):\n    return Big() if a == 1 else a + b\n") == pytest.approx(2 / 3)


def test_the_trainer_drops_a_report_line_over_the_cap_before_parsing_it(tmp_path):
    """The child's writer caps each value; a program that writes the report itself does not: the reader does too."""
    from sandbox import read_report
    (tmp_path / "report").write_bytes(b"[]\n" + b"[" + b"0," * VALUE_BYTES + b"0]\n1\n")
    assert read_report(str(tmp_path / "report"), 3) == [b"[]", b"", b"1"]
    colliding = "{" + ", ".join(str((2**61 - 1) * i) for i in range(1, 50000)) + "}"  # 1.2 MB, every hash 0
    forged = f"import os\nopen('report', 'w').write('[]\\n' + {colliding!r} + '\\n')\nos._exit(0)\n"
    many = [f"assert add({i}, 0) == {i}" for i in range(40)]  # 40 lines may be read: over 1 MiB in all
    assert run("def add(a, b):\n    return None\n" + forged, many) == 0.0


@pytest.mark.parametrize("test", ["assert type(add(1, 2)) == int", "assert list(reversed(add([1], [2]))) == [2, 1]",
                                  "assert print(add(1, 2)) is None"])
def test_a_builtin_the_evaluator_does_not_provide_is_refused_at_load(test):
    with pytest.raises(ValueError, match="builtin the evaluator does not provide"):
        parse_test(test)


def test_an_expression_used_twice_is_evaluated_each_time_in_order():
    counter = "n = 0\ndef tick():\n    global n\n    n += 1\n    return n\n"
    assert run(counter, ["assert tick() == 1", "assert tick() == 2", "assert tick() + tick() == 7"]) == 1.0


# ------------------------------------------------------------------------- time: CPU, not the wall, and one node
def burner(seconds: float) -> str:
    """An honest program whose test needs `seconds` of CPU time, however long the wall clock takes to give it."""
    return ("import time\ndef add(a, b):\n    start = time.process_time()\n"
            f"    while time.process_time() - start < {seconds}:\n        pass\n    return a + b\n")


RANK = """import os, sys, time
from rewards import accuracy_rewards
rows = [{"task": "code", "tests": ["assert add(1, 2) == 3"], "timeout": 1.0}] * 8
print(accuracy_rewards([sys.argv[1]] * 8, rows))
"""


def test_two_ranks_of_one_node_score_an_honest_program_that_needs_60_percent_of_its_timeout():
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", LOCAL_WORLD_SIZE="2")
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, answer(burner(0.6))], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    assert [rank.communicate(timeout=120)[0].strip() for rank in ranks] == [str([1.0] * 8)] * 2


def test_an_honest_program_gets_its_cpu_time_on_an_oversubscribed_machine():
    rows = [{"task": "code", "tests": ["assert add(1, 2) == 3"], "timeout": 1.0}] * 8
    workers = 4 * (os.cpu_count() or 1)  # four children per CPU: each gets a quarter of one, and needs 0.6 s of CPU
    assert accuracy_rewards([answer(burner(0.6))] * 8, rows, workers=workers) == [1.0] * 8


@pytest.mark.parametrize("program", ["import time\ntime.sleep(60)\n", "import os\nos.read(os.pipe()[0], 1)\n",
                                     "import time\nwhile True:\n    time.sleep(0.05)\n"])
def test_a_program_that_sleeps_or_blocks_is_killed_at_its_first_wall_check(program):
    start = time.perf_counter()
    assert run(program + ADD, timeout=1.0) == 0.0
    assert time.perf_counter() - start < 1.0 + 1.5  # the check at 1 s of wall finds it used under 0.1 s of CPU


def test_a_program_that_computes_a_little_and_sleeps_is_stopped_at_the_wall_bound():
    from sandbox import WALL_CHECKS
    sipper = ("import time\nwhile True:\n    start = time.process_time()\n"
              "    while time.process_time() - start < 0.03:\n        pass\n    time.sleep(0.1)\n")
    start = time.perf_counter()
    assert code_reward(answer(sipper + ADD), ADD_TESTS, timeout=0.5) == 0.0
    assert time.perf_counter() - start < WALL_CHECKS * 0.5 + 1.5


def test_the_pool_shares_the_nodes_cpus_among_its_ranks(monkeypatch):
    import rewards
    sizes = []

    class Recorded(rewards.ThreadPoolExecutor):
        def __init__(self, workers):
            sizes.append(workers)
            super().__init__(workers)

    monkeypatch.setattr(rewards, "ThreadPoolExecutor", Recorded)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    for ranks, workers in (("8", 2), ("1", 16), ("32", 1)):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks)
        accuracy_rewards([answer(ADD)], [{"task": "code", "tests": ADD_TESTS}])
        assert sizes.pop() == workers
