"""The trust boundary for model-written code: run it confined, and judge its tests without trusting it. Knows no
rewards or datasets.

The child: run_sandboxed (through run_child) starts `python -I -S sandbox.py TMP`, which reads TMP/job.json,
confines itself (README, "The code sandbox"), runs the program and writes TMP/report: the layers it could not apply,
then each expression's value on a line, as `spell` writes it. The parent reads a line per expression at most,
VALUE_BYTES each, as data (`literal`): its work is bounded by the job. The tests: tests_passed splits each `assert`
into the program's values, computed in the child, and the rest, evaluated here on the data they came back as,
bounded in size and time."""
import functools
import itertools
import json
import math
import os
import re
import stat
import struct
import sys
import warnings
from collections import Counter, OrderedDict, defaultdict

WALL_CHECKS = 10  # a child runs at most this many timeouts of wall time: one that gets a tenth of a CPU finishes
VALUE_BYTES = 1 << 15  # the longest value read back: a set literal of colliding hashes reads in O(n^2)
NOT_RUN = object()  # the value of an expression that raised, crossed as no data, or was not reached
LAYERS = {"landlock": "the program can read and write every file the trainer can (the dataset's answers too)",
          "seccomp": "the program can open sockets, signal processes and hold memory and disk the rlimits miss"}
accepted = set()  # the missing layers the user accepted (require_layers(weak_ok=True)); the child runs without them
warnings.filterwarnings("ignore", module="<report>")  # a report's "0x1for" must not print warnings in the trainer

# ------------------------------------------------------------------------------------------------ the child
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
LANDLOCK_READ = 0b1101  # execute, read file, read directory
LANDLOCK_READ_WRITE = 0b100000000001110  # read file, read directory, write file, truncate: no new files or links
LANDLOCK_QUIET = 0b101  # ABI 7: log no denial to audit, of this domain (same exec) or of any it nests
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 4, 38, 22, 2
NEWEST_SYSCALL = 469  # file_setattr (Linux 6.17): calls added later fail with ENOSYS (README: why a deny-list)
# The calls the child may not make (they fail with EPERM), as name:x86_64/aarch64 numbers (- where it has none).
FORBIDDEN_SYSCALLS = {name: tuple(None if n == "-" else int(n) for n in numbers.split("/"))
                      for name, numbers in re.findall(r"(\w+):([\d-]+/[\d-]+)", """
Processes and threads: clone:56/220 clone3:435/435 fork:57/- vfork:58/- execve:59/221 execveat:322/281. Acting on other
processes (same-uid ones would otherwise allow it): kill:62/129 tkill:200/130 tgkill:234/131 rt_sigqueueinfo:129/138
rt_tgsigqueueinfo:297/240 pidfd_open:434/434 pidfd_send_signal:424/424 pidfd_getfd:438/438 ptrace:101/117
process_vm_readv:310/270 process_vm_writev:311/271 process_madvise:440/440 process_mrelease:448/448 kcmp:312/272
prlimit64:302/261 setpriority:141/140 sched_setparam:142/118 sched_setscheduler:144/119 sched_setaffinity:203/122
sched_setattr:314/274 ioprio_set:251/30 migrate_pages:256/238 move_pages:279/239. The network (by F_SETOWN a socket
pair can signal): socket:41/198 socketpair:53/199. What a file's owner may do that Landlock does not cover (root's
child owns root's files), and open and openat2 (seccomp checks only openat's flags): chmod:90/- fchmod:91/52
fchmodat:268/53 fchmodat2:452/452 chown:92/- fchown:93/55 lchown:94/- fchownat:260/54 utime:132/- utimes:235/-
futimesat:261/- utimensat:280/88 file_setattr:469/469 setxattr:188/5 lsetxattr:189/6 fsetxattr:190/7 removexattr:197/14
lremovexattr:198/15 fremovexattr:199/16 setxattrat:463/463 removexattrat:466/466 getxattr:191/8 lgetxattr:192/9
fgetxattr:193/10 listxattr:194/11 llistxattr:195/12 flistxattr:196/13 getxattrat:464/464 listxattrat:465/465
flock:73/32 fallocate:285/47 inotify_init:253/- inotify_init1:294/26 inotify_add_watch:254/27 fanotify_init:300/262
fanotify_mark:301/263 name_to_handle_at:303/264 open_by_handle_at:304/265 cachestat:451/451 openat2:437/437 open:2/-.
Memory and disk the rlimits miss: memfd_create:319/279 memfd_secret:447/447 io_setup:206/0 io_uring_setup:425/425
io_uring_enter:426/426 io_uring_register:427/427. IPC and keys (shared, or outliving the child): shmget:29/194
shmat:30/196 shmctl:31/195 shmdt:67/197 semget:64/190 semop:65/193 semctl:66/191 semtimedop:220/192 msgget:68/186
msgsnd:69/189 msgrcv:70/188 msgctl:71/187 mq_open:240/180 mq_unlink:241/181 mq_timedsend:242/182
mq_timedreceive:243/183 mq_notify:244/184 mq_getsetattr:245/185 add_key:248/217 request_key:249/218 keyctl:250/219. The
kernel's machinery (counters, BPF, faults, LDT, flushing every disk, its log): perf_event_open:298/241 bpf:321/280
userfaultfd:323/282 modify_ldt:154/- sync:162/81 syncfs:306/267 syslog:103/116 personality:135/92. Root's powers
(dropped too: a second lock) and the mount table: unshare:272/97 setns:308/268 mount:165/40 umount2:166/39
pivot_root:155/41 chroot:161/51 open_tree:428/428 move_mount:429/429 fsopen:430/430 fsconfig:431/431 fsmount:432/432
fspick:433/433 mount_setattr:442/442 open_tree_attr:467/467 statmount:457/457 listmount:458/458 init_module:175/105
finit_module:313/273 delete_module:176/106 kexec_load:246/104 kexec_file_load:320/294 swapon:167/224 swapoff:168/225
reboot:169/142 settimeofday:164/170 clock_settime:227/112 clock_adjtime:305/266 adjtimex:159/171 sethostname:170/161
setdomainname:171/162 quotactl:179/60 quotactl_fd:443/443 acct:163/89 iopl:172/- ioperm:173/-
lsm_set_self_attr:460/460.
""")}
# Calls allowed only with these commands (their second argument): fcntl's descriptor flags and duplication (not
# F_SETOWN, F_SETSIG, F_SETPIPE_SZ, leases, locks), and ioctl's terminal queries and close-on-exec (not attributes).
ALLOWED_COMMANDS = {"fcntl": ((72, 25), (0, 1, 2, 3, 4, 1030)),
                    "ioctl": ((16, 29), (0x5401, 0x5413, 0x541B, 0x5450, 0x5451))}
OPENAT, O_TMPFILE = (257, 56), 0o20000000  # openat is refused with O_TMPFILE: an unnamed file, which Landlock allows
AUDIT_ARCH = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # the column above, and the arch seccomp sees


def confine(tmp: str, cpu_seconds: int, memory_mb: int) -> list[str]:
    """Everything the child may not do, applied to itself before the program runs; the layers it could not apply."""
    import ctypes
    import resource
    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_mb << 20),
                         (resource.RLIMIT_FSIZE, 1 << 20), (resource.RLIMIT_NOFILE, 64),
                         (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_CORE, 1)):  # 1, not 0: no pipe core handler
        resource.setrlimit(limit, (value, value))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no core dump at all: core_pattern's handler would run as root
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # required by both Landlock and seccomp, and final
    if os.geteuid() == 0:  # root's capabilities would override the limits below: keep uid 0 (it may own Python's
        for capability in range(64):  # files), empty the bounding set (PR_CAPBSET_DROP), then drop every capability
            libc.prctl(24, capability, 0, 0, 0)
        if libc.capset((ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()) != 0:  # capset, version 3
            raise OSError(ctypes.get_errno(), "capset")
    missing = []
    for name, layer in (("landlock", restrict_files), ("seccomp", forbid_syscalls)):
        try:
            layer(ctypes, libc, tmp)
        except OSError:
            missing.append(name)
    return missing


def restrict_files(ctypes, libc, tmp: str) -> None:
    """Landlock (Linux 5.13+): read Python's standard library, read and write the files already in the temp dir,
    nothing else; from ABI 4 no TCP, from ABI 6 no signal out of the sandbox. OSError where there is none."""
    syscall = lambda *args: libc.syscall(*map(ctypes.c_long, args))  # noqa: E731
    abi = syscall(LANDLOCK_CREATE_RULESET, 0, 0, 1)  # flag 1: ask for the ABI version
    if abi < 1:
        raise OSError(ctypes.get_errno(), "no Landlock")
    handled = (1 << {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)) - 1  # every file-system right this ABI knows
    ruleset_attr = (ctypes.c_uint64 * 3)(handled, 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    ruleset = syscall(LANDLOCK_CREATE_RULESET, ctypes.addressof(ruleset_attr), ctypes.sizeof(ruleset_attr), 0)
    for path, access in [(p, LANDLOCK_READ) for p in sys.path if os.path.isdir(p)] + [(tmp, LANDLOCK_READ_WRITE)]:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access & handled, fd))  # landlock_path_beneath_attr
        if syscall(LANDLOCK_ADD_RULE, ruleset, 1, ctypes.addressof(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
        os.close(fd)
    if syscall(LANDLOCK_RESTRICT_SELF, ruleset, LANDLOCK_QUIET if abi >= 7 else 0) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")


def forbid_syscalls(ctypes, libc, tmp: str) -> None:
    """seccomp, a classic BPF program: EPERM for FORBIDDEN_SYSCALLS, commands ALLOWED_COMMANDS leaves out, O_TMPFILE
    and another ABI's calls (i386); ENOSYS above NEWEST_SYSCALL (x32's too). OSError where there is no seccomp."""
    if os.uname().machine not in AUDIT_ARCH:
        raise OSError(38, "no system call table for this architecture")
    column, arch = AUDIT_ARCH[os.uname().machine]
    LOAD, EQUAL, ABOVE, ANY_BIT, RETURN = 0x20, 0x15, 0x25, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGT/JSET|K, RET|K
    ALLOW, DENY, NOSYS = (RETURN, 0, 0, 0x7FFF0000), (RETURN, 0, 0, 0x50000 | 1), (RETURN, 0, 0, 0x50000 | 38)
    program = [(LOAD, 0, 0, 4), (EQUAL, "known", 0, arch), DENY, "known", (LOAD, 0, 0, 0),
               (ABOVE, "nosys", 0, NEWEST_SYSCALL)]  # seccomp_data: nr at byte 0, arch at 4, args[i] at 16 + 8 * i
    program += [(EQUAL, "deny", 0, n[column]) for n in FORBIDDEN_SYSCALLS.values() if n[column] is not None]
    for name, (numbers, commands) in ALLOWED_COMMANDS.items():
        program += [(EQUAL, 0, name, numbers[column]), (LOAD, 0, 0, 24)]
        program += [(EQUAL, "allow", 0, command) for command in commands] + [DENY, name]
    program += [(EQUAL, 0, "openat", OPENAT[column]), (LOAD, 0, 0, 32), (ANY_BIT, "deny", "allow", O_TMPFILE), "openat"]
    program += ["allow", ALLOW, "deny", DENY, "nosys", NOSYS]
    code = [item for item in program if not isinstance(item, str)]  # a string labels the instruction after it
    positions = itertools.accumulate((not isinstance(item, str) for item in program), initial=0)
    labels = {item: n for item, n in zip(program, positions) if isinstance(item, str)}
    jump = lambda to, i: labels[to] - i - 1 if to else 0  # noqa: E731 (counted from the next instruction)
    code = [(c, jump(t, i), jump(f, i), k) for i, (c, t, f, k) in enumerate(code)]
    assert all(0 <= jt < 256 and 0 <= jf < 256 for _, jt, jf, _ in code), "a BPF jump is 8 bits: reorder the program"
    instructions = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in code))  # sock_filter
    fprog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(code), ctypes.addressof(instructions)))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0):  # sock_fprog: length, padding, pointer
        raise OSError(ctypes.get_errno(), "seccomp")


# The types whose values cross to the parent (README, "The code sandbox"), by exact type: a subclass may lie in its
# __eq__, __hash__, __iter__, __len__ or __repr__. Compared by id, since a metaclass can make a class equal to int.
ATOMS = tuple(map(id, (type(None), bool, float, complex, str, bytes)))  # repr spells these (inf and nan by name)
INT, SET = id(int), id(set)
DICTS = tuple(map(id, (dict, Counter, OrderedDict, defaultdict)))  # each crosses as the dict it equals
BRACKETS = {id(list): ("[", "]"), id(tuple): ("(", ")"), id(set): ("{", "}"), id(frozenset): ("frozenset({", "})")}


def spell(value, parts: list, type=type, id=id, repr=repr, hex=hex, len=len, items=dict.items) -> None:
    """Append to `parts` text that `literal` reads back as data equal to `value`, which must be of the types above,
    recursively (anything else raises). About as long as its repr; but an int over 14,000 bits is in hex, which reads
    back in linear time (decimal stops at 4300 digits). Raises past VALUE_BYTES parts. The builtins are bound here,
    before the program can replace them."""
    kind = id(type(value))
    if kind in ATOMS or kind == INT and value.bit_length() < 14000:
        parts.append(repr(value))
    elif kind == INT:
        parts.append(hex(value))
    elif kind in DICTS:
        parts.append("{")
        for key, item in items(value):
            spell(key, parts)
            parts.append(":")
            spell(item, parts)
            parts.append(",")
        parts.append("}")
    elif kind in BRACKETS:
        opening, closing = ("set(", ")") if kind == SET and not len(value) else BRACKETS[kind]
        parts.append(opening)
        for item in value:
            spell(item, parts)
            parts.append(",")
        parts.append(closing)
    else:
        raise TypeError("not a value that crosses as data")
    if len(parts) > VALUE_BYTES:  # each part is a character at least: this line would be dropped
        raise ValueError("a value longer than VALUE_BYTES")


def run_job(tmp: str) -> None:
    job = json.load(open(os.path.join(tmp, "job.json")))
    report = open(os.path.join(tmp, "report"), "wb", buffering=0)  # a write per line: each outlives a kill
    missing = confine(tmp, job["cpu_seconds"], job["memory_mb"])
    report.write(json.dumps(missing).encode() + b"\n")
    if set(missing) - set(job["accept"]):
        return  # fail closed: no values without a layer the user has not given up
    if hasattr(sys, "set_int_max_str_digits"):  # the program's ints print at any length, as before Python 3.11: it
        sys.set_int_max_str_digits(0)  # may spend its own time on it (one that long crosses in hex: spell)
    namespace = {"__name__": "solution"}  # so that the program's `if __name__ == "__main__"` block does not run
    try:  # the program, then the tests' setup code in its namespace: a name both define is the setup's, as in MBPP
        for source, name in ((job["program"], "solution.py"), (job["setup"], "setup.py")):
            exec(compile(source, name, "exec"), namespace)
    except BaseException:  # SystemExit too: a program that stops before the tests passes none of them
        return
    for source in job["expressions"]:
        parts = []
        try:
            spell(eval(source, namespace), parts)
            line = "".join(parts).encode("utf-8", "replace")
        except BaseException:  # this expression gets an empty line; the next one still runs
            line = b""
        report.write((line if len(line) <= VALUE_BYTES and b"\n" not in line else b"") + b"\n")


if __name__ == "__main__":  # the child ends here: it does not import or define the parent's half (5 ms a program)
    run_job(sys.argv[1])
    sys.exit()


# ----------------------------------------------------------------------------------------------- the parent
import ast  # noqa: E402 (the parent's, below the child's end)
import builtins  # noqa: E402
import operator  # noqa: E402


class SandboxError(RuntimeError):
    """The sandbox cannot confine programs on this machine as it should, and the user has not accepted that."""


@functools.cache
def missing_layers() -> tuple[str, ...]:
    """The layers the child cannot apply here, as an empty program run with all of them accepted missing reports."""
    lines = run_child("", "", [], 10.0, 256, list(LAYERS))
    if not lines:
        raise SandboxError("the sandbox's child reported nothing: it could not start or confine itself")
    return tuple(json.loads(lines[0]))


def require_layers(weak_ok: bool = False) -> None:
    """Fail closed: raise SandboxError naming each layer this machine lacks, unless the user accepts weaker
    isolation (grpo.py --allow-weak-sandbox); then say so on stderr and run the children without those layers."""
    missing = [layer for layer in missing_layers() if layer not in accepted]
    if missing and not weak_ok:
        raise SandboxError("the code sandbox cannot apply " + "; ".join(f"{m}: without it {LAYERS[m]}" for m in missing)
                           + ". Run on a kernel that has it, or accept weaker isolation (grpo.py --allow-weak-sandbox)")
    for layer in missing:
        print(f"warning: the code sandbox runs without {layer}, as accepted: {LAYERS[layer]}", file=sys.stderr)
    accepted.update(missing)


def run_sandboxed(program: str, expressions: list[str], timeout: float, memory_mb: int, setup: str = "") -> list:
    """Run `program` confined, then `setup` in its namespace, then evaluate each expression there: their values as
    data; NOT_RUN where one raised, crossed as no data (`spell`), or the child died, timed out or had no disk. Raises
    SandboxError (require_layers)."""
    require_layers()
    lines = run_child(program, setup, expressions, timeout, memory_mb, sorted(accepted)) or []
    values = [literal(line) for line in lines[1:]]
    return values + [NOT_RUN] * (len(expressions) - len(values))


def run_child(program: str, setup: str, expressions: list, timeout: float, memory_mb: int, accept: list) -> list | None:
    """The report's lines; the child's whole process group is killed when it runs out of time (exits_while_computing).
    None if the job could not be set up (no temp dir, a full disk, no process to spare): that costs this program its
    values, no more."""
    import signal  # imported here, like the others, so that the child (which runs this file) starts faster
    import subprocess
    import tempfile
    if sys.platform != "linux":
        raise OSError("the code sandbox needs Linux (README, 'The code sandbox')")
    try:
        tmp = tempfile.mkdtemp(prefix="grpo-sandbox-")
        try:
            with open(os.path.join(tmp, "job.json"), "w") as f:
                json.dump({"program": program, "setup": setup, "expressions": expressions, "memory_mb": memory_mb,
                           "cpu_seconds": math.ceil(timeout), "accept": accept}, f)
            child = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), tmp], cwd=tmp, env={},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            if not exits_while_computing(child.pid, timeout):
                os.killpg(child.pid, signal.SIGKILL)  # the child's whole process group
            child.wait()
            return read_report(os.path.join(tmp, "report"), len(expressions) + 1)
        finally:  # rm, not shutil.rmtree, which recurses: without Landlock, 1000 nested directories would make it raise
            subprocess.run(["rm", "-rf", "--", tmp], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        warnings.warn(f"code sandbox: {e}: this program gets no values", RuntimeWarning)


def exits_while_computing(pid: int, timeout: float) -> bool:
    """Wait for the child: True if it exited. Its CPU time is bounded by its rlimit (`timeout`, rounded up to whole
    seconds), not by the wall clock, so that a busy machine costs an honest program nothing; its wall time is checked
    every `timeout` seconds: it is stopped at the first check where it used under a tenth of a CPU since the last (it
    sleeps or blocks), or at the WALL_CHECKS-th."""
    import select
    pidfd = os.pidfd_open(pid)  # readable when the child exits: no polling loop, as Popen.wait has
    exits = select.poll()
    exits.register(pidfd, select.POLLIN)
    try:
        used = 0.0
        for _ in range(WALL_CHECKS):
            if exits.poll(timeout * 1000):
                return True
            if (now := cpu_seconds(pid)) - used < timeout / 10:
                return False
            used = now
        return False
    finally:
        os.close(pidfd)


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used: /proc/PID/stat's utime and stime, the 12th and 13th fields after its name (in
    parentheses, and the program may rename itself: the last parenthesis ends it)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    except OSError:  # it has just exited
        return math.inf
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_report(path: str, lines: int) -> list[bytes]:
    """Its first `lines` complete lines, if it is a regular file, not a link, FIFO or device the program put there;
    VALUE_BYTES + 1 bytes a line at most are read (a flood is neither read nor parsed), and a line over VALUE_BYTES,
    which only a program that wrote the report itself makes, is emptied before anything parses it."""
    with open(path, "rb", opener=lambda name, _: os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)) as f:
        regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        read = f.read(lines * (VALUE_BYTES + 1)).split(b"\n", lines)[:-1] if regular else []
    return [line if len(line) <= VALUE_BYTES else b"" for line in read]


def literal(line: bytes):
    """A value the child reported, read as data (parsed, never run): a Python literal, in which `inf`, `nan` and
    `frozenset({...})` stand for those values (as `spell` writes them); NOT_RUN if it is none."""
    try:
        return ast.literal_eval(constants(compile(line.decode(), "<report>", "eval", ast.PyCF_ONLY_AST).body))
    except Exception:  # a bad UTF-8 byte, 1e400+1j (OverflowError), deep nesting: this value is lost, nothing else
        return NOT_RUN


def constants(node):
    """`node` with the values spell writes by name (inf, nan, frozenset), which literal_eval does not read, made
    constants, innermost first: each node is read once, so the cost is linear in the line."""
    for field, child in ast.iter_fields(node):
        if isinstance(child, ast.AST):
            setattr(node, field, constants(child))
        elif isinstance(child, list):
            setattr(node, field, [constants(c) if isinstance(c, ast.AST) else c for c in child])
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return ast.Constant(float(node.id))
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "frozenset" and len(node.args) == 1 and \
            not node.keywords:
        return ast.Constant(frozenset(ast.literal_eval(node.args[0])))
    return node


# -------------------------------------------------------------------------------------- the tests, judged here
# A test `assert EXPR` is split in two: the program's values (each name it defines, with the calls, attributes and
# items taken from it: `f(2)`, `Solution().solve([1, 2])`, `f(2).strip()`, a conversion of one: `list(f(2))`) are
# evaluated in the child and come back as data (`literal`); the rest (`abs(_ - 12.566) < 1e-6`, `math.isclose(_,
# 0.5)`, `1 < _ < 4`) is evaluated here by `evaluate`, bounded in size. Only data crosses back, and only a right
# program computes the right data.
def tests_passed(program: str, tests: list[str], timeout: float, memory_mb: int, setup: str = "") -> list[bool]:
    """Whether `program` passes each test: its values in them computed in the child (after `setup`, in its
    namespace), the rest of each test evaluated here. Each occurrence of a value is computed, in the tests' order."""
    checks = [parse_test(t) for t in tests]
    sources = [s for _, calls in checks for s in calls.values()]
    values = iter(run_sandboxed(program, sources, timeout, memory_mb, setup=setup))
    return [passes(claim, {node: next(values) for node in calls}) for claim, calls in checks]


def rounded(number, digits=None):
    """round(), refusing digits far from 0: rounding an int to -10**9 digits would compute 10 ** 10**9."""
    if digits is not None and abs(digits) > 4300:
        raise ValueError("round() to more than 4300 digits")
    return round(number, digits)


# What a test may call here, on literals only: these functions (sum without a start value, which could make it
# concatenate lists in quadratic time), math's, and the keyword arguments below.
SAFE = {"abs": abs, "all": all, "any": any, "bool": bool, "dict": dict, "float": float, "frozenset": frozenset,
        "int": int, "isinstance": isinstance, "len": len, "list": list, "max": max, "min": min, "round": rounded,
        "set": set, "sorted": sorted, "str": str, "sum": lambda values: sum(values), "tuple": tuple, "math": math}
MATH = ("ceil", "e", "exp", "fabs", "floor", "inf", "isclose", "isfinite", "isinf", "isnan", "log", "nan", "pi", "sqrt")
CONVERSIONS = ("dict", "frozenset", "list", "set", "sorted", "tuple")  # of a program value, run in the child
KEYWORDS = ("reverse", "rel_tol", "abs_tol")
EVALUATED = (ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.Call, ast.Subscript, ast.Slice, ast.Tuple, ast.List,
             ast.Set, ast.Dict)  # what a test may build around the program's values, besides SAFE's names
SIZE = 1 << 16  # the most bytes, characters or items a value built here may hold: 10**10**10 and [0]*10**9 refused
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_, ast.Invert: operator.invert}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.LShift: operator.lshift,
          ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitAnd: operator.and_, ast.BitXor: operator.xor}
COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
           ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


@functools.lru_cache(maxsize=1 << 12)  # a row's tests meet each of its G completions, and are only read
def parse_test(test: str) -> tuple[ast.expr, dict]:
    """A test `assert EXPR` as EXPR's syntax tree and its program values ({node: source}, for the child); the rest of
    EXPR is evaluated here. Raises ValueError saying why a test cannot be split so."""
    try:
        body = ast.parse(test).body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        body = []
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        raise ValueError(f"a test must be one assert statement, got {test!r}")
    try:
        calls = program_values(body[0].test)
    except (ValueError, TypeError, ArithmeticError, LookupError, MemoryError, RecursionError) as e:
        raise ValueError(f"the test {test!r} cannot be checked: {e}") from None
    if not calls:
        raise ValueError(f"a test must use the program (call a function it defines), got {test!r}")
    return body[0].test, {node: ast.unparse(node) for node in calls}


def program_values(claim: ast.expr) -> list:
    """The program's values in a test (split). A test that names only builtins and fails with the evaluator's ones
    (MBPP's `assert sum(10, 15) == 6`: its sum takes one list) can only mean the program's functions of those names."""
    calls = []
    try:
        split(claim, calls, frozenset())
    except (ValueError, TypeError, ArithmeticError, LookupError):
        names = {node.id for node in ast.walk(claim) if isinstance(node, ast.Name)}
        own = frozenset(name for name in names if hasattr(builtins, name))
        if not own or names - own - {"math"}:
            raise
        split(claim, calls, own)
    return calls


def split(node: ast.expr, calls: list, own: frozenset) -> None:
    """Check that `node` can be evaluated here once the program's values in it (appended to `calls`) are known. A
    part that does not involve the program is computed now, so a test too costly to check is refused at load time.
    `own`: the builtins' names that are the program's here."""
    if program_value(node, own):
        return calls.append(node)
    if not uses_program(node, own):
        return weigh(evaluate(node, {}))
    if not isinstance(node, EVALUATED) or isinstance(node, ast.Dict) and None in node.keys:
        raise ValueError(f"{type(node).__name__} is not evaluated in a test, only literals, operators and "
                         f"{', '.join(SAFE)} (math: {', '.join(MATH)})")
    if isinstance(node, ast.Compare) and all(uses_program(side, own) for side in [node.left, *node.comparators]):
        raise ValueError("a comparison needs a side computed without the program (a value written out)")
    if isinstance(node, ast.Call) and (uses_program(node.func, own) or {k.arg for k in node.keywords} - set(KEYWORDS)):
        raise ValueError(f"only {', '.join(SAFE)} and math's functions are called here, with no keyword but "
                         f"{', '.join(KEYWORDS)}; methods only on the program's values, as in f(2).strip()")
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.expr, ast.keyword)):
            split(child.value if isinstance(child, ast.keyword) else child, calls, own)


def program_value(node: ast.expr, own: frozenset) -> bool:
    """A name the program defines (any name but SAFE's, and those in `own`), or a call, attribute or item taken from
    one, or a conversion of one (`list(f(1))`: a generator's items cross, the generator could not). A builtin the
    evaluator does not provide (`type(f(0))`, `reversed(f(1))`) is none: its value is no data, so the test could
    never pass; it is refused when the data loads."""
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in CONVERSIONS and len(node.args) == 1 and \
                all(k.arg == "reverse" for k in node.keywords) and node.func.id not in own:
            return program_value(node.args[0], own)
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name) and node.id not in SAFE and node.id not in own and hasattr(builtins, node.id):
        raise ValueError(f"{node.id} is a builtin the evaluator does not provide, and its value is no data: the "
                         f"test could never pass (it provides {', '.join(SAFE)})")
    return isinstance(node, ast.Name) and (node.id not in SAFE or node.id in own)


def uses_program(node: ast.expr, own: frozenset) -> bool:
    return any(isinstance(n, ast.Name) and (n.id not in SAFE or n.id in own) for n in ast.walk(node))


def evaluate(node: ast.expr, values: dict):
    """The value of a test's expression: the program's values from `values` (NOT_RUN: it gave none), the rest
    computed here from literals, operators, SAFE functions and math's. Raises on anything else or too large."""
    if node in values:
        if values[node] is NOT_RUN:
            raise ValueError("the program gave no value")
        return values[node]
    kind = type(node)
    if kind is ast.Constant:
        return node.value
    if kind is ast.Name:
        return SAFE[node.id]
    if kind is ast.Attribute and getattr(node.value, "id", None) == "math" and node.attr in MATH:
        return getattr(math, node.attr)
    if kind in (ast.Tuple, ast.List, ast.Set):
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[kind](evaluate(e, values) for e in node.elts)
    if kind is ast.Dict and None not in node.keys:
        return {evaluate(k, values): evaluate(v, values) for k, v in zip(node.keys, node.values)}
    if kind is ast.UnaryOp:
        return UNARY[type(node.op)](evaluate(node.operand, values))
    if kind is ast.BinOp:
        return weigh(binary(type(node.op), evaluate(node.left, values), evaluate(node.right, values)))
    if kind is ast.BoolOp:  # short-circuits as Python does: `and` stops at a false operand, `or` at a true one
        for operand in node.values:
            value = evaluate(operand, values)
            if bool(value) == isinstance(node.op, ast.Or):
                break
        return value
    if kind is ast.Compare:  # chained as Python does: 1 < f(2) < 4 is 1 < f(2) and f(2) < 4
        left = evaluate(node.left, values)
        for op, right in zip(node.ops, (evaluate(c, values) for c in node.comparators)):
            if not COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if kind is ast.Call and all(k.arg in KEYWORDS for k in node.keywords):
        function = evaluate(node.func, values)
        return weigh(function(*(evaluate(a, values) for a in node.args),
                              **{k.arg: evaluate(k.value, values) for k in node.keywords}))
    if kind is ast.Subscript:
        return evaluate(node.value, values)[evaluate(node.slice, values)]
    if kind is ast.Slice:
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else evaluate(part, values) for part in parts))
    raise ValueError(f"{kind.__name__} is not evaluated in a test")


def binary(op: type, a, b):
    """a OP b; refused before computing a result over SIZE, and for str % args (a width can ask for any length)."""
    if op is ast.Pow and type(b) is int and isinstance(a, int) and abs(a) > 1 and b * a.bit_length() > 8 * SIZE:
        raise ValueError(f"{a} ** {b} is too large to compute here")
    if op is ast.LShift and type(b) is int and isinstance(a, int) and a.bit_length() + b > 8 * SIZE:
        raise ValueError(f"{a} << {b} is too large to compute here")
    repeated, times = (a, b) if isinstance(b, int) else (b, a)
    if op is ast.Mult and isinstance(repeated, (str, bytes, tuple, list)) and isinstance(times, int) and \
            weight(repeated) * times > SIZE:
        raise ValueError("a repetition too large to compute here")
    if op is ast.Mod and isinstance(a, (str, bytes)):
        raise ValueError("no % formatting in a test")
    return BINARY[op](a, b)


def weigh(value):
    if weight(value) > SIZE:
        raise ValueError("a value too large to check here")
    return value


def weight(value) -> int:
    """About how many bytes, characters and items `value` holds, a part repeated counted each time (so what comparing
    or printing it costs); counting stops past SIZE."""
    if isinstance(value, int):
        return value.bit_length() // 8
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (tuple, list, set, frozenset, dict)):
        total = len(value)
        for item in value.items() if isinstance(value, dict) else value:
            if total > SIZE:
                break
            total += weight(item)
        return total
    return 1


def passes(claim: ast.expr, values: dict) -> bool:
    try:
        return bool(evaluate(claim, values))
    except Exception:  # a value of the wrong type or too large, or one the program did not give: the test fails
        return False

