"""Start and stop the tritonserver binary that the nvidia-pytriton wheel ships (Triton 2.51 with the Python
backend, x86-64 Linux), directly: PyTriton's own Triton() wrapper is not used.

What it takes, measured: LD_LIBRARY_PATH holding the wheel's nvidia_pytriton.libs (and the directory of the
libpython the stub links); the Python stub of the serving Python's version copied from python_backend_stubs/X.Y/
to backends/python/triton_python_backend_stub; the serving environment's bin/ first on PATH (the stub's embedded
interpreter finds its sys.prefix through `python3` on PATH, as `source venv/bin/activate` would give it; it ignores
PYTHONPATH); numpy < 2 in that environment (numpy 2 makes the bundled Python backend return empty outputs); and
--http-address / --grpc-address 127.0.0.1. Ports are free ports of the loopback interface.

    python -m mod_export.serving.bundled --repository model_repository --pytriton ./pytriton
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

from mod_export import output
from mod_export.errors import MissingDependencyError, ModExportError

logger = logging.getLogger(__name__)

SERVER = Path("pytriton/tritonserver")


def unsupported_reason() -> str | None:
    """Why the bundled server cannot run on this machine, or None."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the nvidia-pytriton wheel's tritonserver is built for x86-64 Linux (this is {sys.platform}/{platform.machine()})"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_of(env: Path) -> tuple[str, Path]:
    """(X.Y, directory of its shared libpython) of the Python in environment `env` (a venv)."""
    python = env / "bin" / "python"
    code = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_config_var('LIBDIR'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return out[0], Path(out[1])


def shared_libpython(python: str | os.PathLike | None = None) -> Path | None:
    """The shared libpython of `python` (default: this interpreter), or None for a statically linked Python."""
    if python is None:
        name, libdir, shared = (sysconfig.get_config_var(k) for k in ("INSTSONAME", "LIBDIR", "Py_ENABLE_SHARED"))
    else:
        code = "import sysconfig as s; print(s.get_config_var('INSTSONAME'), s.get_config_var('LIBDIR'), s.get_config_var('Py_ENABLE_SHARED'))"
        name, libdir, shared = subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.split()
    path = Path(str(libdir)) / str(name)
    return path if str(shared) == "1" and path.is_file() else None


def prepare_backends(pytriton: Path, version: str) -> Path:
    """The wheel's backends/ with the stub for Python `version` in place (idempotent); returns backends/."""
    root = Path(pytriton) / SERVER
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise MissingDependencyError(f"the bundled Triton has no Python backend stub for Python {version} ({stub})")
    target = root / "backends" / "python" / "triton_python_backend_stub"
    if not target.is_file() or target.stat().st_size != stub.stat().st_size:
        output.copy_file(stub, target)  # atomic: servers started at once never see half a stub
        target.chmod(0o755)
    return root / "backends"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started the server dies (Linux prctl)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_session(process: subprocess.Popen, timeout: float) -> None:
    """Stop a process started with start_new_session (its process group id is its pid) and every process left in
    its group: SIGTERM to the group, SIGKILL after `timeout` s, and then SIGKILL to whatever outlived the leader
    (a tritonserver that exited, or died alone, can leave Python-backend stubs running)."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout)
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class BundledServer:
    """A tritonserver process on loopback free ports, stopped on exit (context manager)."""

    def __init__(self, repositories, pytriton: Path, env: Path, log: Path | None = None, ports=None):
        reason = unsupported_reason()
        if reason:
            raise MissingDependencyError(reason)
        self.repositories = [
            Path(r).resolve() for r in ([repositories] if isinstance(repositories, str | Path) else repositories)
        ]
        self.pytriton, self.env, self.log_path = Path(pytriton).resolve(), Path(env).resolve(), log
        binary = self.pytriton / SERVER / "bin" / "tritonserver"
        if not binary.is_file():
            raise MissingDependencyError(
                f"no tritonserver in {self.pytriton} (pip install --no-deps --target DIR nvidia-pytriton==0.7.0)"
            )
        self.binary = binary
        self.http_port, self.grpc_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def command(self, backends: Path) -> list[str]:
        command = [str(self.binary), "--backend-directory", str(backends), "--strict-readiness", "true"]
        for repository in self.repositories:
            command += ["--model-repository", str(repository)]
        command += ["--http-address", "127.0.0.1", "--http-port", str(self.http_port)]
        command += ["--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port)]
        command += ["--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port)]
        return command + ["--exit-on-error", "false", "--exit-timeout-secs", "5"]

    def environment(self, libdir: Path) -> dict:
        env = dict(os.environ)
        libs = [str(self.pytriton / "nvidia_pytriton.libs"), str(libdir), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(self.env / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.env)
        env.pop("PYTHONHOME", None)
        return env

    def start(self, timeout: float = 120) -> BundledServer:
        version, libdir = python_of(self.env)
        backends = prepare_backends(self.pytriton, version)
        self._log = output.open_stream(self.log_path) if self.log_path else subprocess.DEVNULL  # closed in stop()
        self.process = subprocess.Popen(
            self.command(backends),
            env=self.environment(libdir),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ModExportError(
                    f"tritonserver exited with code {self.process.returncode} while starting (log: {self.log_path})"
                )
            if self.live():
                logger.info("tritonserver on http %s, grpc %d", self.url, self.grpc_port)
                return self
            time.sleep(0.25)
        self.stop()
        raise ModExportError(f"tritonserver did not come up within {timeout:.0f} s (log: {self.log_path})")

    def stop(self, timeout: float = 20) -> None:
        if self.process is not None:
            stop_session(self.process, timeout)  # the server and its Python-backend stubs
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> BundledServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ HTTP (standard library only)

    def get(self, path: str, timeout: float = 5):
        """(status, parsed JSON body or None) of GET http://127.0.0.1:PORT/PATH."""
        try:
            with urllib.request.urlopen(f"http://{self.url}/{path.lstrip('/')}", timeout=timeout) as reply:
                body = reply.read()
                return reply.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, None

    def live(self) -> bool:
        return self.get("v2/health/live")[0] == 200

    def model_ready(self, name: str) -> bool:
        return self.get(f"v2/models/{name}/ready")[0] == 200

    def models(self) -> list[dict]:
        """The repository index: name, version, state (READY, UNAVAILABLE) and reason of every model."""
        request = urllib.request.Request(f"http://{self.url}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read())

    def statistics(self, name: str) -> dict:
        """Triton's statistics of model `name` (inference_count, execution_count, batch_stats, ...)."""
        status, body = self.get(f"v2/models/{name}/stats")
        if status != 200:
            raise ModExportError(f"no statistics for model {name} (HTTP {status})")
        return body["model_stats"][0]

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Triton's Prometheus metrics whose name starts with `prefix`: `name{labels}` -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith(prefix) and not line.startswith("#") and " " in line:
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mod_export.serving.bundled", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, action="append", required=True, help="model repository (repeatable)")
    parser.add_argument("--pytriton", type=Path, required=True, help="where nvidia-pytriton was installed (--target)")
    parser.add_argument("--env", type=Path, default=Path(sys.prefix), help="serving environment (default: this one)")
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--log", type=Path, help="server log file (default: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ports = (args.http_port or free_port(), args.grpc_port or free_port(), free_port())
    try:
        with BundledServer(args.repository, args.pytriton, args.env, args.log, ports) as server:
            for model in server.models():
                logger.info("%s: %s %s", model["name"], model.get("state"), model.get("reason", ""))
            logger.info("serving on http://%s and grpc 127.0.0.1:%d; Ctrl-C stops", server.url, server.grpc_port)
            while server.process.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        return 130
    except ModExportError as exc:
        sys.stderr.write(f"error: {exc}\n")  # this module's command line: one line, its exit code
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
