"""The serving side, built from this repository's own files and cached under build/serving/:

- the mod-export-runtime wheel (deploy/runtime), rebuilt every session (seconds);
- a torch-free virtual environment: `python -m venv`, then `pip install '<that wheel>[text]' 'numpy<2'`, which
  pulls exactly the runtime's dependencies and its text extra (tokenizers; numpy < 2: the bundled Python backend
  returns empty outputs with numpy 2); rebuilt when deploy/runtime/pyproject.toml or the Python changes, else only the wheel is reinstalled;
- nvidia-pytriton 0.7.0 (tritonserver 2.51 with the Python backend), installed with `pip install --no-deps
  --target` so none of its client-side dependencies enter either environment.

The tests and benchmarks/serving.py share it. Everything here runs pip as a subprocess: never torch."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mod_export.serving.bundled import shared_libpython, unsupported_reason

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MOD_EXPORT_SERVING_CACHE", ROOT / "build" / "serving"))
PYTRITON = "nvidia-pytriton==0.7.0"
SERVING_PINS = ("numpy<2",)
RUNTIME_EXTRAS = "[text]"  # tokenizers: the generation model of an export with a tokenizer.json


@dataclass
class ServingEnv:
    env: Path  # the torch-free virtual environment
    python: Path
    pytriton: Path | None  # where the wheel was installed (None: the bundled server cannot run here)
    skip_reason: str | None  # why the bundled server cannot run here


def _pip(python: Path | str, *args: str, timeout: float = 900) -> None:
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def base_python() -> Path:
    """The interpreter the serving venv is made from: this one's base (a venv's home), with a shared libpython
    (the Python backend's stub links it); /usr/bin/python3 where this one is linked statically."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    if shared_libpython() is not None or not Path("/usr/bin/python3").is_file():
        return base
    return Path("/usr/bin/python3") if shared_libpython("/usr/bin/python3") is not None else base


def runtime_wheel() -> Path:
    """Build the mod-export-runtime wheel from deploy/runtime (this interpreter's setuptools, no network)."""
    out = CACHE / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("mod_export_runtime-*.whl"):
        old.unlink()
    shutil.rmtree(ROOT / "deploy" / "runtime" / "build", ignore_errors=True)  # an interrupted build's leftovers
    _pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", str(ROOT / "deploy" / "runtime"), "-w", str(out))
    return next(out.glob("mod_export_runtime-*.whl"))


def _env_key(python: Path) -> str:
    digest = hashlib.sha256((ROOT / "deploy" / "runtime" / "pyproject.toml").read_bytes())
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
    digest.update(f"{python}\n{version.stdout}\n{SERVING_PINS}\n{RUNTIME_EXTRAS}".encode())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _cache_lock():
    """One builder at a time (two test workers, or a benchmark beside the tests): pip builds the wheel in
    deploy/runtime/build/, which two concurrent builds would both write."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def serving_env() -> ServingEnv:
    with _cache_lock():
        return _serving_env()


def _serving_env() -> ServingEnv:
    python = base_python()
    env = CACHE / f"env-{_env_key(python)}"
    wheel = runtime_wheel()
    venv_python = env / "bin" / "python"
    if not (env / ".complete").is_file():
        subprocess.run([str(python), "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
        _pip(
            venv_python, "install", f"{wheel}[text]", *SERVING_PINS
        )  # the runtime's own dependencies and its text extra
        (env / ".complete").write_text(_env_key(python))
    else:
        _pip(venv_python, "install", "--no-deps", "--force-reinstall", str(wheel))
    reason = unsupported_reason()
    if reason is None and shared_libpython(venv_python) is None:
        reason = f"the Python backend's stub needs a shared libpython, and {python} is linked statically"
    pytriton = None
    if reason is None:
        pytriton = CACHE / "pytriton-0.7.0"
        if not (pytriton / ".complete").is_file():
            _pip(sys.executable, "install", "--no-deps", "--upgrade", "--target", str(pytriton), PYTRITON)
            (pytriton / ".complete").write_text(PYTRITON)
    return ServingEnv(env, venv_python, pytriton, reason)
