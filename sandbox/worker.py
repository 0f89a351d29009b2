"""The sandbox worker: a separate process, started by exec, that runs analysts' code.

Started as `python -I -m sandbox.worker CONFIG` with an empty environment and only its
two pipes. It confines itself (hardening.py), imports everything it will need, loads
the seccomp filter, says which layers took, and then serves load and call requests
until its input closes. It never writes anywhere but its output pipe.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import sys
import time
from typing import Any

import numpy as np

from sandbox import hardening, policy, protocol
from sandbox.errors import PolicyError, Rule, Violation
from sandbox.results import check_result


def _warm_up() -> None:
    """Touch the lazily imported parts now: after the filter, no file can be opened."""
    try:
        import pyseccomp  # noqa: F401  (loads libseccomp while files can still be opened)
    except ImportError:
        pass
    a = np.arange(100.0)
    for fn in (np.mean, np.std, np.var, np.median, np.sort, np.unique, np.cumsum, np.histogram):
        fn(a)
    np.quantile(a, [0.1, 0.5])
    np.percentile(a, 50)
    np.linalg.norm(a)
    np.polyfit(a, a, 1)
    np.corrcoef(a, a)
    ns = policy.load_module("import numpy as np\nimport math, statistics\ndef on_board(w, p, s):\n"
                            "    print('x')\n    return {'m': float(np.mean(w['a'].v))}\n", "warmup.py")
    policy.call_entry(ns, "on_board", {"a": policy.make_signal(a.copy(), a.copy())}, {}, None, filename="warmup.py")
    check_result({"x": a, "y": [1.0, float("nan")]})
    protocol.encode({"ok": True, "value": a})
    try:
        raise ValueError("warm")
    except ValueError:
        pass


class Worker:
    def __init__(self, rfd: int, wfd: int, arena: mmap.mmap | None = None) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.arena = arena
        self.modules: dict[str, tuple[str, dict[str, Any]]] = {}

    def serve(self) -> None:
        while True:
            try:
                request = protocol.read_message(self.rfd)
            except protocol.PipeClosed:
                return
            reply = self.handle(request)
            protocol.write_message(self.wfd, reply)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            if op == "load":
                return self.load(request)
            if op == "call":
                return self.call(request)
            if op == "ping":
                return {"ok": True}
            return {"ok": False, "rule": Rule.ERROR.value, "message": f"unknown op {op!r}"}
        except Violation as exc:
            return {"ok": False, "rule": exc.rule.value, "message": exc.message, "line": exc.line}
        except PolicyError as exc:
            first = exc.problems[0]
            return {"ok": False, "rule": first.rule.value, "message": str(exc), "line": first.line}
        except MemoryError:
            return {"ok": False, "rule": Rule.MEMORY.value, "message": "out of memory"}

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        source, name = request["source"], request["name"]
        digest = hashlib.sha256(source.encode()).hexdigest()
        if digest not in self.modules:
            self.modules[digest] = (name, policy.load_module(source, name))
        return {"ok": True, "hash": digest}

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        name, namespace = self.modules[request["hash"]]
        entry = request["entry"]
        started = time.perf_counter()
        if entry == "on_board":
            if "arena" in request:
                # Copied out of the arena: a module that kept a view would otherwise
                # see the next call's window, maybe another assignment's data.
                window = {
                    k: policy.make_signal(
                        np.frombuffer(self.arena, np.float64, n, ot).copy(),
                        np.frombuffer(self.arena, np.float64, n, ov).copy(),
                    )
                    for k, (ot, ov, n) in request["arena"].items()
                }
            else:
                window = {k: policy.make_signal(np.array(t), np.array(v)) for k, (t, v) in request["window"].items()}
            args: tuple[Any, ...] = (window, request.get("params") or {}, request.get("state"))
        elif entry == "off_board":
            args = (request.get("results") or {}, request.get("params") or {}, request.get("state"))
        else:
            args = (request.get("state"),)
        value = policy.call_entry(namespace, entry, *args, filename=name)
        value, flags = check_result(value, max_bytes=request.get("max_bytes", 16 * 2**20))
        return {"ok": True, "value": value, "flags": flags, "elapsed": time.perf_counter() - started}


def main() -> None:
    config = json.loads(sys.argv[1])
    rfd, wfd = config["rfd"], config["wfd"]
    try:
        arena = mmap.mmap(config["arena_fd"], config["arena_size"], prot=mmap.PROT_READ)
        layers = confine(config, rfd, wfd)
    except Exception as exc:  # say why on the pipe: stderr goes nowhere
        protocol.write_message(wfd, {"ok": False, "message": f"worker start failed: {type(exc).__name__}: {exc}"})
        sys.exit(1)
    protocol.write_message(wfd, {"ok": True, "ready": True, "layers": [
        {"name": layer.name, "applied": layer.applied, "detail": layer.detail} for layer in layers
    ]})
    Worker(rfd, wfd, arena).serve()


def confine(config: dict[str, Any], rfd: int, wfd: int) -> list[hardening.Layer]:
    # Import and touch everything first: after the uid switch the interpreter's own
    # files may be unreadable, and after the filter nothing can be opened at all.
    _warm_up()
    layers = [hardening.close_other_fds({0, 1, 2, rfd, wfd})]
    if config.get("netns", True):
        layers.append(hardening.network_namespace())
    layers.append(hardening.drop_uid(config.get("uid", 65534)))
    layers.append(hardening.no_new_privs())
    layers.append(hardening.rlimits(config["memory_bytes"], config["cpu_seconds"], config["open_files"]))
    layers.append(hardening.seccomp_filter())
    return layers


if __name__ == "__main__":
    main()
