"""tests/gpu_check.py, the one command that checks the GPU path, in its CPU version: every step passes and is in the
table it writes; a step that overruns is stopped, with its children, and said to be; a failing step is said to be."""
import os
import re
import subprocess
import sys
import time

import pytest

import gpu_check

SHAPE = "qwen2.5-vocabulary, tiny"


def check(tmp_path, *args) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run the check on the CPU; its exit, and the status of each step in the table it wrote, by name."""
    out = tmp_path / "gpu_check.md"
    done = subprocess.run([sys.executable, gpu_check.__file__, "--out", str(out), *args], capture_output=True,
                          text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    rows = re.findall(r"^\| \d+ \| (.+?) \| (.+?) \|", out.read_text(), re.MULTILINE)  # the steps' table
    return done, dict(rows)


@pytest.mark.slow
def test_every_step_of_the_cpu_run_passes_and_is_in_the_table(tmp_path):
    done, statuses = check(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(statuses) == [f"build the {SHAPE} model", "sampler exactness, shipped", f"sampler exactness, {SHAPE}",
                              *[f"grpo.py, shipped, {variant}" for variant in gpu_check.VARIANTS],
                              f"grpo.py, {SHAPE}, bf16, rollout correction", "bench.py, tiny"]
    assert set(statuses.values()) == {"pass"}, statuses


def test_a_step_that_overruns_the_budget_is_reported_timed_out_and_the_rest_skipped(tmp_path):
    done, statuses = check(tmp_path, "--budget", "1")  # no step starts Python and torch in a second
    assert done.returncode == 1
    first, *rest = statuses.values()
    assert first == "timed out after 1 s" and rest and set(rest) == {"skipped: budget spent"}, statuses


def ends(pid: int) -> bool:
    """Whether the process ends (or is a zombie no one has reaped) within 10 s: a SIGKILL is delivered, not awaited."""
    for _ in range(100):
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_a_step_that_overruns_is_killed_with_its_children(tmp_path):
    """As torchrun's workers would be: a step's children must not outlive it, holding the GPU for the next."""
    log = str(tmp_path / "step.log")
    parent = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
              "; print(child.pid, flush=True); child.wait()")
    assert gpu_check.run_step([sys.executable, "-c", parent], 3, log)[0] == "timed out after 3 s"
    assert ends(int(open(log).read().split()[0]))


def test_a_failing_step_is_reported_with_its_exit_status_and_last_line(tmp_path):
    log = str(tmp_path / "step.log")
    status, output = gpu_check.run_step([sys.executable, "-c", "raise SystemExit('gpu_check: why')"], 30, log)
    assert status == "FAIL (exit 1)" and gpu_check.detail(output) == "gpu_check: why"
    assert gpu_check.run_step([sys.executable, "-c", "print('| x | failed | y |')"], 30, log)[0] == "FAIL (exit 0)"
