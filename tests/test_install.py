"""The project as a dependency: a wheel of the checkout, installed into a fresh virtual environment, runs the
README's own-reward script and its golden example from a directory outside the checkout."""
import os
import shutil
import site
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example(marker: str) -> str:
    return open(os.path.join(ROOT, "README.md")).read().split(f"<!-- {marker} -->\n```python\n")[1].split("```")[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """The python of a fresh venv holding a wheel of the checkout, built as pip builds one (setuptools fetched from
    the package index) from a copy (a build writes beside its sources). The venv sees this interpreter's packages
    (torch...) through a .pth file, after its own."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "out", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache", "examples"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w",
                    str(tmp / "wheel")], check=True, capture_output=True, timeout=300)
    venv.create(tmp / "venv", with_pip=True)
    python = str(tmp / "venv" / "bin" / "python")
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                         text=True, check=True).stdout.strip()
    with open(os.path.join(own, "parent.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    wheel = next((tmp / "wheel").iterdir())
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    return python


def outside(python: str, tmp_path, *args, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_installed_modules_are_the_wheels_and_importing_them_does_nothing(installed, tmp_path):
    code = ("import grpo, sample, rewards, sandbox, torch.distributed as dist\n"
            "print(grpo.__file__, grpo.DATA, grpo.GOLDEN, dist.is_initialized(), sep='\\n')")
    done = outside(installed, tmp_path, "-c", code)
    module, data, golden, initialized = done.stdout.splitlines()
    assert not module.startswith(ROOT) and not data.startswith(ROOT) and os.path.isfile(golden)
    assert os.path.isfile(os.path.join(data, "model", "model.safetensors")) and initialized == "False"
    assert done.stderr == ""
    assert "--precision" in outside(installed, tmp_path, "-m", "grpo", "--help").stdout
    code = ("import rewards\n"  # the sandbox's child runs the installed sandbox.py by its path
            "print(rewards.code_reward('<answer>def f(x):\\n    return 2 * x</answer>', ['assert f(1) == 2', "
            "'assert f(2) == 5']))")
    assert outside(installed, tmp_path, "-c", code).stdout.strip() == "0.5"


@pytest.mark.slow
def test_the_readme_examples_run_outside_the_checkout(installed, tmp_path):
    (tmp_path / "my_task.py").write_text(readme_example("your own reward"))
    rows = "".join('{"task": "reverse", "prompt": "Write %r backwards.", "word": "%s"}\n' % (w, w)
                   for w in ("stressed", "drawer", "loop", "star"))
    (tmp_path / "reverse.jsonl").write_text(rows)
    outside(installed, tmp_path, "my_task.py", "--data", "reverse.jsonl", "--steps", "2", "--G", "2",
            "--prompts-per-step", "2", "--eval-data", "", "--out", "out")
    assert [line.count('"step"') for line in open(tmp_path / "out" / "metrics.jsonl")] == [1, 1]
    golden = ("import grpo\n"
              "def my_grpo_loss(logp, old, ref, A, mask, beta, eps_low, eps_high, kl, sampling, agg, max_len):\n"
              "    losses = grpo.per_token_loss(logp, old, ref, A, beta, eps_low, eps_high, kl, sampling, mask)\n"
              "    return grpo.masked_aggregate(losses, mask, agg, max_len=max_len)\n")
    golden += readme_example("golden example")
    assert outside(installed, tmp_path, "-c", golden).stdout.strip().endswith("cases agree")
