"""The sandbox worker: a separate, long-lived process that runs one assignment's
analysts' code.

Workers are forked by the zygote (zygote.py), itself started as

    python -I -S -B -X utf8 -c BOOT CONFIG_JSON

(`-I`: no PYTHON* variables, no user site, no script directory on the path; `-S`:
no site.py, so no .pth file runs, and the import path comes explicitly in the
config; `-B`: it writes no bytecode), with an environment that holds nothing but
fixed thread settings for numeric libraries. The zygote runs `warm_up` once; each
worker it forks (`forked_main`) holds no descriptor but its request pipe (read),
reply pipe (write), stdin and stdout on /dev/null, stderr (a pipe the supervisor
drains) and the arena's memfd, and applies the remaining layers itself
(`_confine_rest`). `main`/`confine` still run a whole worker by exec, layers and
warm-up included (`python -m sandbox.worker CONFIG_JSON` by hand).

At start it maps the arena, confines itself (`confine`; hardening.py says why in
this order), imports and touches everything it will need before the uid switch and
the filter, and sends one "ready" message that lists every layer, applied or not and
why. Then it serves load, call and ping requests (protocol.py) one at a time until
its request pipe closes. It never writes to stdout or stderr itself: print() in a
module is collected, bounded, and returned with the reply.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

import cbor2  # noqa: F401 — imported before the filter, like everything else
import numpy as np

from oodida.sandbox import hardening, policy, protocol
from oodida.sandbox.arena import ArenaView
from oodida.sandbox.errors import PolicyError, Problem, Rule, Violation
from oodida.sandbox.results import check_result

try:  # loads libseccomp now (ctypes' find_library runs ldconfig: impossible later)
    import pyseccomp  # noqa: F401
except (ImportError, RuntimeError, OSError):
    pass

MAX_STDOUT = 64 * 1024
MAX_MESSAGE_TEXT = 4000

# policy.call_entry(namespace, entry, *args, filename=...) where the policy offers it
_CALL_TAKES_FILENAME = "filename" in inspect.signature(policy.call_entry).parameters


def _entries(namespace: dict[str, Any]) -> list[str]:
    """The entry points a loaded module defines (callable), so the supervisor can say
    "this module has no on_board" at deploy time rather than at the first call."""
    return sorted(e for e in policy.ENTRY_POINTS if callable(namespace.get(e)))


def _call_entry(namespace: dict[str, Any], entry: str, args: tuple[Any, ...], filename: str) -> Any:
    if _CALL_TAKES_FILENAME:
        return policy.call_entry(namespace, entry, *args, filename=filename)
    return policy.call_entry(namespace, entry, *args)


# --- print() output ----------------------------------------------------------------------


class Stdout:
    """What a module printed during one request, up to `limit` characters."""

    def __init__(self, limit: int = MAX_STDOUT) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def add(self, text: Any) -> None:
        if type(text) is not str:
            text = str(text)
        room = self.limit - self.size
        if room <= 0:
            self.dropped += len(text)
            return
        if len(text) > room:
            self.dropped += len(text) - room
            text = text[:room]
        self.parts.append(text)
        self.size += len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters of output not kept]\n"
        self.parts, self.size, self.dropped = [], 0, 0
        return text


STDOUT = Stdout()
_CAPTURING: dict[type, type] = {}


def capturing(collector: Any) -> Any:
    """The module's print collector (RestrictedPython's `_print_`), also teeing into
    STDOUT, so the supervisor gets the output whether or not the module reads
    `printed`."""
    if not isinstance(collector, type):
        return collector
    cls = _CAPTURING.get(collector)
    if cls is None:

        class Captured(collector):  # type: ignore[misc]
            def write(self, text: str) -> None:
                STDOUT.add(text)
                super().write(text)

        Captured.__name__ = collector.__name__
        cls = _CAPTURING[collector] = Captured
    return cls


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    # numpy's RuntimeWarnings (mean of an empty slice, division by zero) are part of
    # the module's output; no source line is read (no file can be opened).
    STDOUT.add(f"{getattr(category, '__name__', 'Warning')}: {message}\n")


# --- requests ----------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_TEXT else text[:MAX_MESSAGE_TEXT] + " [...]"


def _refusal(rule: Rule, message: str, line: int | None = None) -> dict[str, Any]:
    return {"ok": False, "rule": rule.value, "message": _clip(message), "line": line}


def _problem(p: Problem) -> dict[str, Any]:
    return {"rule": p.rule.value, "message": _clip(p.message), "line": p.line, "col": p.col}


class Worker:
    def __init__(
        self, rfd: int, wfd: int, arena: ArenaView | None, *, max_message: int, max_result: int,
        copy_windows: bool = True,
    ) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.arena = arena
        self.max_message = max_message
        self.max_result = max_result
        self.copy_windows = copy_windows
        self.modules: dict[str, tuple[str, dict[str, Any]]] = {}
        self._buffers: dict[tuple[str, int], np.ndarray] = {}
        self._seq: Any = None  # the request being answered: every reply echoes its number

    def serve(self) -> NoReturn:
        while True:
            try:
                frame = protocol.read_frame(self.rfd, self.max_message)
            except protocol.PipeClosed:
                os._exit(0)  # the supervisor closed the pipe: done (no interpreter teardown)
            except protocol.MessageTooLarge:
                os._exit(3)  # its body was not read: the stream is lost; the supervisor sees a crash
            self._seq = None
            try:
                request = protocol.decode(frame, writable=True, from_supervisor=True)
            except (protocol.ProtocolError, MemoryError) as exc:
                self.reply(_refusal(Rule.ERROR, f"bad request: {exc}"))
                continue
            finally:
                del frame
            self._seq = request.get("seq")
            self.reply(self.handle(request))

    def reply(self, message: dict[str, Any]) -> None:
        message["cpu"] = time.process_time()
        message["seq"] = self._seq
        try:
            data = protocol.encode(message, self.max_message)
        except protocol.MessageTooLarge as exc:
            data = protocol.encode({
                **_refusal(Rule.RESULT_TOO_LARGE, f"the reply takes {exc.size} bytes, more than the "
                           f"{exc.limit}-byte limit"),
                "stdout": message.get("stdout", "")[:1000], "cpu": message["cpu"], "seq": self._seq,
            })
        except MemoryError:
            message = None  # type: ignore[assignment]
            gc.collect()
            refusal = _refusal(Rule.MEMORY, "out of memory while sending the result")
            data = protocol.encode({**refusal, "seq": self._seq})
        except Exception as exc:  # noqa: BLE001 — a value check_result let through but CBOR cannot carry
            data = protocol.encode({**_refusal(Rule.DISALLOWED_RETURN, f"the result cannot be sent: {exc}"),
                                    "seq": self._seq})
        try:
            protocol.write_all(self.wfd, data)
        except protocol.PipeClosed:
            os._exit(0)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            if op == "call":
                reply = self.call(request)
            elif op == "load":
                reply = self.load(request)
            elif op == "ping":
                reply = {"ok": True}
            else:
                reply = _refusal(Rule.ERROR, f"unknown request {op!r}")
        except Violation as exc:
            reply = _refusal(exc.rule, exc.message, exc.line)
        except MemoryError:
            reply = _refusal(Rule.MEMORY, "out of memory")
        except RecursionError:
            reply = _refusal(Rule.ERROR, "RecursionError: nested too deeply")
        except Exception as exc:  # noqa: BLE001 — a request the worker cannot serve; say why
            reply = _refusal(Rule.ERROR, f"the sandbox could not run the request: {type(exc).__name__}: {exc}")
        finally:
            request.clear()  # drop window arrays, params and state now
        reply["stdout"] = STDOUT.take()
        return reply

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        source, name, digest = request["source"], request["name"], request["hash"]
        if type(source) is not str or type(name) is not str:
            return _refusal(Rule.ERROR, "load needs source and name as text")
        if hashlib.sha256(source.encode()).hexdigest() != digest:
            return _refusal(Rule.ERROR, "the module's hash does not match its source")
        if digest in self.modules:
            return {"ok": True, "hash": digest, "entries": _entries(self.modules[digest][1])}
        try:
            namespace = policy.load_module(source, name)
        except PolicyError as exc:
            return {"ok": False, "problems": [_problem(p) for p in exc.problems]}
        except Violation:
            raise
        except (MemoryError, RecursionError, SyntaxError, ValueError, OverflowError) as exc:
            # The parser or compiler itself gave up (nesting too deep, too large):
            # a compile-time refusal like any other.
            text = str(exc) or "too deeply nested or too large"
            problem = Problem(Rule.SYNTAX, f"the module cannot be compiled: {type(exc).__name__}: {text}")
            return {"ok": False, "problems": [_problem(problem)]}
        if "_print_" in namespace:
            namespace["_print_"] = capturing(namespace["_print_"])
        self.modules[digest] = (name, namespace)
        return {"ok": True, "hash": digest, "entries": _entries(namespace)}

    def window(self, request: dict[str, Any]) -> dict[str, Any]:
        """{signal: Signal(t, v)}, read-only: copies out of the arena (or its views,
        without copy_windows), or the arrays that came inline through the pipe."""
        inline = request.get("window_inline")
        if inline is not None:  # decoded as private writable copies; make_signal freezes them
            return {str(k): policy.make_signal(t, v) for k, (t, v) in inline.items()}
        if self.arena is None:
            raise ValueError("this worker has no arena for windows")
        window = {}
        for key, desc in (request.get("window") or {}).items():
            t, v = self.arena.signal_arrays(desc)
            if self.copy_windows:
                t, v = self._private((str(key), 0), t), self._private((str(key), 1), v)
            window[str(key)] = policy.make_signal(t, v)
        for slot in [slot for slot in self._buffers if slot[0] not in window]:
            del self._buffers[slot]
        return window

    def _private(self, slot: tuple[str, int], src: np.ndarray) -> np.ndarray:
        """A private copy of `src`: in last call's buffer for this slot when nothing
        holds on to it any more (no page faults for a big window, call after call),
        else in a fresh one (a module that kept last call's array keeps its data)."""
        buf = self._buffers.get(slot)
        n = src.shape[0]
        # 3 references: the dict, `buf`, getrefcount's argument. Any view a module
        # kept (a Signal, an array, a slice of one) holds the buffer as its base.
        if buf is None or buf.shape[0] < n or sys.getrefcount(buf) > 3:
            buf = np.empty(n, dtype=np.float64)
            self._buffers[slot] = buf
        out = buf[:n]
        np.copyto(out, src)
        return out

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        digest, entry = request["hash"], request["entry"]
        module = self.modules.get(digest)
        if module is None:
            return _refusal(Rule.ERROR, f"module {str(digest)[:12]} is not loaded in this worker")
        name, namespace = module
        params = request.get("params")
        params = {} if params is None else params
        state = request.get("state")
        if entry == "on_board":
            args: tuple[Any, ...] = (self.window(request), params, state)
        elif entry == "off_board":
            results = request.get("results")
            args = ({} if results is None else results, params, state)
        elif entry == "migrate":
            args = (state,)
        else:
            return _refusal(Rule.MISSING_ENTRY, f"{entry!r} is not an entry point")
        value = _call_entry(namespace, entry, args, name)
        del args
        value, flags = check_result(value, max_bytes=self.max_result)
        return {"ok": True, "value": value, "flags": flags}


# --- start ---------------------------------------------------------------------------------


WARM_SOURCE = (
    "import numpy as np\nimport math\nimport statistics\n"
    "def on_board(window, params, state):\n"
    "    print('warm', len(window['a'].v))\n"
    "    x = window['a'].v\n"
    "    try:\n        {}['k']\n    except KeyError as e:\n        pass\n"
    "    return {'m': float(np.mean(x)), 'a': np.sort(x), 's': statistics.mean([1.0, 2.0]), "
    "'r': math.sqrt(2.0), 'l': [1, 'x', None, (2, 3)]}\n"
)


def warm_up() -> hardening.Layer:
    """Run every path a call will take once, while files can still be opened: lazy
    imports, OpenSSL's hash setup, numpy's first use of each facade function, a
    module compiled, loaded, called, its result checked and encoded. Reported as the
    "imports" layer: a step that failed (the policy or a facade changed shape) means
    a lazy import may be refused after the filter, which the worker then reports as
    the module's error."""
    failed: list[str] = []

    def step(label: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 — reported in the layer, never fatal
            failed.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            return None

    a = np.arange(1.0, 9.0)
    hashlib.sha256(b"warm").hexdigest()
    time.process_time()

    def facades() -> None:
        from oodida.sandbox.facade import FACADES

        for make in FACADES.values():
            facade = make()
            for member in dir(facade):
                fn = getattr(facade, member, None)
                if not callable(fn) or isinstance(fn, type):
                    continue
                for args in ((a,), (a, a), (list(a),), (3.0,), (a, 0.5)):
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            fn(*args)
                    except Exception:  # noqa: BLE001, S112 — only the side effect (imports) matters
                        continue

    step("facades", facades)

    def module() -> Any:
        try:
            namespace = policy.load_module(WARM_SOURCE, "warm_up.py")
        except PolicyError:  # a policy without print(): the rest still warms
            namespace = policy.load_module(WARM_SOURCE.replace("print(", "len("), "warm_up.py")
        if "_print_" in namespace:
            namespace["_print_"] = capturing(namespace["_print_"])
        window = {"a": policy.make_signal(a.copy(), a.copy())}
        value, _ = check_result(_call_entry(namespace, "on_board", (window, {}, None), "warm_up.py"))
        return value

    value = step("a module", module)
    step("results", lambda: check_result({"x": np.array([1.0, np.nan]), "y": float("inf")}))
    for label, bad in (("refused result", lambda: check_result(object())),
                       ("refused module", lambda: policy.load_module("import os\n", "w.py"))):
        try:
            bad()
        except (Violation, PolicyError):
            pass
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{label}: {type(exc).__name__}: {exc}")

    def codec() -> None:
        frame = protocol.encode({"ok": True, "value": value, "flags": [], "b": np.array([True])})
        protocol.decode(frame[protocol.HEADER.size:], writable=True)

    step("protocol", codec)
    try:
        raise MemoryError
    except MemoryError:
        pass
    STDOUT.take()
    if failed:
        return hardening.Layer("imports", False, "warm-up incomplete, a lazy import may fail after the filter: "
                               + "; ".join(failed))
    return hardening.Layer(
        "imports", True, "numpy, cbor2, RestrictedPython, the policy, facades, result checks and libseccomp "
        "loaded and exercised before the uid switch and the filter",
    )


def confine(config: dict[str, Any], rfd: int | None = None, wfd: int | None = None) -> list[hardening.Layer]:
    """Apply every layer to this process, in order (hardening.py says why this order);
    the layers, applied or not. `rfd`/`wfd` default to config["rfd"]/config["wfd"]:
    the only descriptors (with 0, 1, 2) that stay open, and the only ones the filter
    lets it read and write (0 is never read; 1 and 2 are /dev/null and the stderr pipe
    in the worker). Map the arena before this: its descriptor is closed here."""
    rfd = config["rfd"] if rfd is None else rfd
    wfd = config["wfd"] if wfd is None else wfd
    layers = [hardening.close_descriptors({0, 1, 2, rfd, wfd})]
    if config.get("netns", True):
        layers.append(hardening.network_namespace())
    else:
        layers.append(hardening.Layer("network namespace", False, "disabled by the supervisor's configuration"))
    layers.append(warm_up())  # before the uid switch: the interpreter's files may be unreadable after it
    return layers + _confine_rest(config, rfd, wfd, collect=True)


def _confine_rest(config: dict[str, Any], rfd: int, wfd: int, *, collect: bool) -> list[hardening.Layer]:
    """The layers after the warm-up: what a worker forked from the zygote applies itself."""
    layers = [hardening.drop_privileges(config.get("uid", 65534), config.get("gid"))]
    layers.append(hardening.drop_capabilities())
    layers.append(hardening.no_new_privs())
    layers.append(hardening.not_dumpable())
    layers.append(hardening.parent_death_signal(config.get("ppid")))
    address_space = config.get("address_space", config.get("memory_bytes", 1 << 30))
    layers.append(hardening.rlimits(address_space, config.get("cpu_seconds", 600), config.get("open_files", 16)))
    sys.unraisablehook = lambda unraisable: None
    warnings.resetwarnings()
    warnings.simplefilter("default")
    warnings.showwarning = _show_warning
    if collect:
        gc.collect()
        gc.freeze()  # everything so far lives for good: later collections skip it
    if config.get("seccomp", True):
        layers.append(hardening.seccomp_filter([rfd], [wfd, 1, 2]))
    else:
        layers.append(hardening.Layer("seccomp", False, "disabled by the supervisor's configuration"))
    return layers


def _configured(config: dict[str, Any], rfd: int, wfd: int, arena: ArenaView | None) -> Worker:
    """The worker, once confined: from here on it writes nowhere but its reply pipe
    (Python's own messages go nowhere; a fatal error from C still reaches fd 2, drained)."""
    sys.stdout = sys.stderr = None
    worker = Worker(
        rfd, wfd, arena,
        max_message=config.get("max_message", protocol.MAX_MESSAGE),
        max_result=config.get("max_result", protocol.MAX_MESSAGE - 2**20),
        copy_windows=config.get("copy_windows", True),
    )
    STDOUT.limit = config.get("max_stdout", MAX_STDOUT)
    return worker


def _serve(wfd: int, start: Callable[[], tuple[list[hardening.Layer], Worker]]) -> NoReturn:
    """Run `start` (confinement), then say ready with the layers and serve; a failure
    before that is said on the pipe, since stderr goes nowhere useful."""
    try:
        layers, worker = start()
    except BaseException as exc:  # noqa: BLE001 — say why on the pipe
        try:
            protocol.write_message(wfd, {"ok": False, "ready": True, "message": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(1)
    protocol.write_message(wfd, {
        "ok": True, "ready": True, "pid": os.getpid(), "cpu": time.process_time(),
        "layers": [layer.as_dict() for layer in layers],
    })
    worker.serve()


def forked_main(config: dict[str, Any], rfd: int, wfd: int, err: int, arena_fd: int,
                inherited: list[dict[str, Any]]) -> NoReturn:
    """A worker forked from the zygote (zygote.py): its own session, its stderr pipe,
    its arena; then its own layers (descriptors, uid, capabilities, prctls, rlimits,
    seccomp) before it reads its first request. `inherited` are the layers it got
    from the zygote (the network namespace, the warm-up)."""

    def start() -> tuple[list[hardening.Layer], Worker]:
        os.setsid()
        os.dup2(err, 2)
        os.close(err)
        arena = ArenaView(arena_fd, config["arena_size"])
        layers = [hardening.close_descriptors({0, 1, 2, rfd, wfd})]
        layers += [hardening.Layer(str(d["name"]), bool(d["applied"]), str(d["detail"])) for d in inherited]
        layers += _confine_rest(config, rfd, wfd, collect=False)
        return layers, _configured(config, rfd, wfd, arena)

    _serve(wfd, start)


def main(config: dict[str, Any] | None = None) -> NoReturn:
    if config is None:
        config = json.loads(sys.argv[1])
    cfg: dict[str, Any] = config

    def start() -> tuple[list[hardening.Layer], Worker]:
        # The arena first: mapping it closes its descriptor, so none but the pipes survive.
        arena = ArenaView(cfg["arena_fd"], cfg["arena_size"]) if cfg.get("arena_fd") is not None else None
        layers = confine(cfg)
        return layers, _configured(cfg, cfg["rfd"], cfg["wfd"], arena)

    _serve(cfg["wfd"], start)


if __name__ == "__main__":
    main()
