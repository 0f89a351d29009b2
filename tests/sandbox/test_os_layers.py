"""The operating-system layers hold on their own, without RestrictedPython.

The compile policy stops every hostile module before it reaches a system call, so
the corpus cannot show that the OS boundary works. Here a process confines itself
exactly as the worker does (sandbox.worker.confine) and then, as plain Python with
no guard at all, tries what an escaped module would: open files, sockets, fork,
threads, signals to its parent, raise its limits. Every attempt must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ATTEMPTS = r'''
import json, os, socket, sys, threading, resource
sys.path.insert(0, ROOT)
from oodida.sandbox.worker import confine
r, w = os.pipe()
config = {"memory_bytes": 1 << 30, "cpu_seconds": 60, "open_files": 16, "uid": 65534, "netns": True}
layers = confine(config, r, w)
out = {"layers": {l.name: l.applied for l in layers}}
def attempt(name, fn):
    try:
        fn()
        out[name] = "allowed"
    except BaseException as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
attempt("open", lambda: open("/etc/hostname").read())
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("fork", lambda: os.fork())
attempt("thread", lambda: threading.Thread(target=lambda: None).start())
attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
attempt("raise_limit", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)))
attempt("write_file", lambda: os.open("/tmp/oodida-escape", os.O_CREAT | os.O_WRONLY))
os.write(w, json.dumps(out).encode())
os.close(w)
print(os.read(r, 1 << 16).decode())
'''.replace("ROOT", repr(str(ROOT)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch and network namespace need root (the agent's case)")
def test_an_escaped_module_meets_the_os_boundary():
    out = subprocess.run(
        [sys.executable, "-I", "-c", ATTEMPTS], capture_output=True, text=True, timeout=60,
        env={"OPENBLAS_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert all(result["layers"].values()), result["layers"]
    for name in ("open", "socket", "fork", "kill_parent", "write_file"):
        assert result[name].startswith("PermissionError"), (name, result[name])
    # the resource module reports the kernel's EPERM for a raised hard limit as ValueError
    assert result["raise_limit"] == "ValueError: not allowed to raise maximum limit"
    assert result["thread"].startswith("RuntimeError"), result["thread"]  # clone refused
    assert not Path("/tmp/oodida-escape").exists()
