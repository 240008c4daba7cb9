"""``crispmoss serve`` as a child process on a free loopback port, for tests and benchmarks (stdlib only).

    with ServerProcess(["-m", "model.gguf", "--threads", "1"], log_path) as s:
        ...  # s.url, s.port, s.health(), s.log()

The child runs ``python -m crispmoss serve`` with this interpreter and this copy of the package first on its
path (so a source tree under test serves itself), without ``CRISPMOSS_API_KEY`` from the caller's environment
unless ``env`` sets it. Starting waits until ``GET /health`` answers 200; a child that exits or does not answer in
time raises RuntimeError with the tail of its log.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``crispmoss serve`` child bound to 127.0.0.1 on a free port; ``args`` are its options (``-m`` ...)."""

    def __init__(self, args: Sequence[str], log_path: "os.PathLike[str] | str",
                 env: Optional[Dict[str, str]] = None, startup_timeout: float = 90.0) -> None:
        import crispmoss

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        pkg_root = os.path.dirname(os.path.dirname(crispmoss.__file__))
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = pkg_root + os.pathsep + child_env.get("PYTHONPATH", "")
        child_env.pop("CRISPMOSS_API_KEY", None)
        child_env.update(env or {})
        self._log = open(self.log_path, "w")
        cmd: List[str] = [sys.executable, "-m", "crispmoss", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                          *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=child_env)
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crispmoss serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"crispmoss serve did not answer /health within {timeout:g} s:\n"
                                   f"{self.log()[-3000:]}")
            time.sleep(0.2)

    def health(self) -> Dict[str, Any]:
        """``GET /health`` as a dict."""
        with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
            return json.loads(r.read())

    def log(self) -> str:
        """What the child has written to stdout and stderr so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminates the child (SIGTERM, then SIGKILL after ``timeout`` seconds) and closes its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["ServerProcess", "free_port"]
