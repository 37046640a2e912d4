"""Run a program confined, evaluate expressions in its namespace, and return their values as Python literals.

The parent side is run_sandboxed; the child side is this file run as `python -I -S sandbox.py TMP` (end of the file).
It knows nothing of rewards.
"""
import ast
import errno
import json
import os
import stat
import sys
import warnings

NOT_RUN = object()  # the value of an expression the child did not report: it raised, or the child died first
REPORT_BYTES = 1 << 20  # the most of a child's report (and of any file it writes) that counts
VALUE_BYTES = 1 << 15  # the longest repr of one value read back: a set literal of colliding hashes reads in O(n^2)
warnings.filterwarnings("ignore", module="<report>")  # a report's "0x1for" must not print warnings in the trainer


def literal(text) -> object:
    """A value the child reported, read as a Python literal (parsed, never run); NOT_RUN if it is not one."""
    try:
        if not isinstance(text, str) or len(text) > VALUE_BYTES:
            return NOT_RUN
        return ast.literal_eval(compile(text, "<report>", "eval", ast.PyCF_ONLY_AST))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NOT_RUN


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


# ------------------------------------------------------------------------------------------------ the child
# `python -I -S sandbox.py TMP` (started by run_sandboxed): read TMP/job.json, confine this process, run the program
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
