"""The zygote: an exec'd, warmed template process that forks sandbox workers.

Exec'ing a hardened Python and importing numpy, RestrictedPython and the facades
costs 150-220 ms: too slow for a worker per assignment, and for replacing one that
was killed. The zygote pays it once per supervisor owner (agent or server): it is
started like a worker used to be (exec, empty environment, no descriptor but its
control socket and 0, 1, 2), runs the whole warm-up (worker.warm_up), and then only
forks. It never holds a secret, a window, a parameter or a line of an analyst's code:
the only data it ever receives are fork requests (limits and four descriptors).

Confined as far as forking allows: its own empty network namespace (inherited by
every worker), no_new_privs, not dumpable, SIGKILL when its owner dies, no core and
no file writes, and a seccomp deny-list (hardening.zygote_filter: no file opened, no
socket made, no other process traced, exec kills). It keeps its uid (a root zygote
lets each worker switch to its own unprivileged uid) and cannot have the workers'
allow-list (it must fork, receive descriptors and reap); each worker applies the
rest itself, its own filter on top, before it reads a request.

Protocol over one AF_UNIX SOCK_SEQPACKET socket (a message per packet, JSON):

    owner -> zygote  {"id": n, "config": {...}} with [request_r, reply_w, stderr_w, arena]
    zygote -> owner  {"ready": true, "pid", "layers": [...]}            (once, at start)
                     {"id": n, "pid": p} with [pidfd of p]          (the worker forked)
                     {"id": n, "error": "..."}
                     {"exit": p, "code": c}       (p was reaped: c as Popen.returncode)

The owner kills its workers itself, through the pidfd (no pid reuse race); the
zygote reaps them and says how each ended. Workers die with their zygote (their
parent-death signal), the zygote with its owner.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import select
import socket
import sys
from typing import Any, NoReturn

from oodida.sandbox import hardening

MAX_PACKET = 64 * 1024


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    try:
        if fds:
            socket.send_fds(sock, [data], fds)
        else:
            sock.send(data)
    except OSError:
        os._exit(0)  # the owner is gone


def _own_limits(open_files: int) -> hardening.Layer:
    try:
        for which in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE):
            resource.setrlimit(which, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    except (ValueError, OSError) as exc:
        return hardening.Layer("zygote rlimits", False, str(exc))
    return hardening.Layer("zygote rlimits", True, f"no core, file size 0, {open_files} files")


def _confine_self(config: dict[str, Any], ctl: int) -> list[hardening.Layer]:
    from oodida.sandbox import worker  # numpy and everything else: imported while files can be opened

    layers = [hardening.close_descriptors({0, 1, 2, ctl})]
    if config.get("netns", True):
        layers.append(hardening.network_namespace())
    else:
        layers.append(hardening.Layer("network namespace", False, "disabled by the supervisor's configuration"))
    layers.append(worker.warm_up())
    zygote_layers = [
        hardening.no_new_privs(),
        hardening.not_dumpable(),
        hardening.parent_death_signal(config.get("ppid")),
        _own_limits(int(config.get("open_files", 4096))),
        hardening.zygote_filter() if config.get("seccomp", True) else
        hardening.Layer("zygote seccomp", False, "disabled by the supervisor's configuration"),
    ]
    for layer in zygote_layers:  # the zygote's own: named so, not mistaken for the worker's
        layers.append(hardening.Layer(f"zygote {layer.name}" if not layer.name.startswith("zygote") else layer.name,
                                      layer.applied, layer.detail))
    return layers


def _fork(sock: socket.socket, request: dict[str, Any], fds: list[int],
          inherited: list[dict[str, Any]], children: dict[int, int]) -> None:
    from oodida.sandbox import worker

    ident = request.get("id")
    config = request.get("config")
    if len(fds) != 4 or type(config) is not dict:
        for fd in fds:
            os.close(fd)
        _send(sock, {"id": ident, "error": "a fork request needs a config and four descriptors"})
        return
    me = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: nothing of the zygote's loop survives this branch
        try:
            sock.close()
            for pidfd in children:
                os.close(pidfd)
            rfd, wfd, err, arena = fds
            worker.forked_main({**config, "ppid": me}, rfd, wfd, err, arena, inherited)
        finally:
            os._exit(1)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    children[pidfd] = pid
    _send(sock, {"id": ident, "pid": pid}, [pidfd])


def main(config: dict[str, Any]) -> NoReturn:
    ctl = int(config["ctl"])
    sock = socket.socket(fileno=ctl)
    try:
        layers = _confine_self(config, ctl)
    except BaseException as exc:  # noqa: BLE001 — say why on the socket: stderr goes nowhere useful
        _send(sock, {"ready": True, "ok": False, "message": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    # What every worker reports as layers it got from here (the network namespace, the
    # warm-up); the zygote's own prctls and limits are its business.
    inherited = [layer.as_dict() for layer in layers if not layer.name.startswith("zygote")
                 and layer.name != "descriptors"]
    gc.collect()
    gc.freeze()  # the warmed heap is shared with every worker, copy-on-write: keep the GC off it
    _send(sock, {"ready": True, "ok": True, "pid": os.getpid(), "layers": [layer.as_dict() for layer in layers]})
    sys.stdout = sys.stderr = None
    children: dict[int, int] = {}  # pidfd -> pid
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == ctl:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 8)
                except InterruptedError:
                    continue
                except OSError:
                    os._exit(0)
                if not data:
                    os._exit(0)  # the owner is gone: so are we (and, by their death signal, the workers)
                try:
                    request = json.loads(data)
                except ValueError:
                    request = {}
                before = set(children)
                _fork(sock, request if type(request) is dict else {}, list(fds), inherited, children)
                for pidfd in set(children) - before:
                    poller.register(pidfd, select.POLLIN)
            else:
                pid = children.pop(fd, None)
                poller.unregister(fd)
                os.close(fd)
                if pid is None:
                    continue
                try:
                    _, status = os.waitpid(pid, 0)
                    code = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    code = None
                _send(sock, {"exit": pid, "code": code})


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
