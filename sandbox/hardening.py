"""The operating-system layers of the sandbox worker, applied at its start.

Each layer reports whether it took and why not: a host that cannot give one (no
root for the uid switch, no libseccomp) gets a worker that says so at start, and the
agent logs it. Order matters: namespaces and the uid switch need privileges that
no_new_privs and the seccomp filter then take away for good; everything the worker
will need is imported before the filter, which allows little beyond read, write and
memory management.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from dataclasses import dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Layer:
    name: str
    applied: bool
    detail: str = ""


def _errno_text() -> str:
    code = ctypes.get_errno()
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


def close_other_fds(keep: set[int]) -> Layer:
    """Only the worker's own pipes stay open (the agent's sockets, files, never)."""
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    closed = 0
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
                closed += 1
            except OSError:
                pass
    return Layer("descriptors", True, f"kept {sorted(keep)}, closed {closed}")


def network_namespace() -> Layer:
    """A new, empty network namespace: no interface but a down loopback."""
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if _libc.unshare(flags) != 0:
        return Layer("network namespace", False, f"unshare failed ({_errno_text()})")
    return Layer("network namespace", True, "own empty network namespace")


def drop_uid(uid: int) -> Layer:
    if os.geteuid() != 0:
        return Layer("unprivileged uid", os.geteuid() != 0, f"already unprivileged (uid {os.geteuid()})")
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        return Layer("unprivileged uid", False, f"cannot switch to uid {uid}: {exc.strerror}")
    return Layer("unprivileged uid", True, f"uid {uid}")


def no_new_privs() -> Layer:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return Layer("no_new_privs", False, _errno_text())
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    return Layer("no_new_privs", True, "set (and not dumpable)")


def rlimits(memory_bytes: int, cpu_seconds: int, open_files: int) -> Layer:
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_NOFILE: open_files,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: 0,
    }
    failed = []
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            failed.append(f"{which}: {exc}")
    if failed:
        return Layer("rlimits", False, "; ".join(failed))
    return Layer(
        "rlimits", True, f"address space {memory_bytes >> 20} MiB, CPU {cpu_seconds} s, {open_files} files, "
        "file size 0, no core, no new processes"
    )


# What a computing CPython needs once everything is imported. Everything else fails
# with EPERM (a clear OSError in Python), and a few calls kill the worker outright.
ALLOWED_SYSCALLS = (
    "read write readv writev close fstat newfstatat lseek mmap munmap mremap brk madvise mprotect "
    "futex clock_gettime clock_getres gettimeofday nanosleep clock_nanosleep getrandom rt_sigaction "
    "rt_sigprocmask rt_sigreturn sigaltstack exit exit_group getpid gettid getuid geteuid getgid getegid "
    "sched_yield sched_getaffinity restart_syscall fcntl ioctl getrusage times set_robust_list rseq "
    "membarrier prlimit64 getrlimit"
).split()
DEADLY_SYSCALLS = "execve execveat ptrace process_vm_readv process_vm_writev kexec_load init_module".split()


def seccomp_filter() -> Layer:
    try:
        import pyseccomp as seccomp
    except ImportError as exc:
        return Layer("seccomp", False, f"pyseccomp is not available: {exc}")
    try:
        f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
        for name in ALLOWED_SYSCALLS:
            try:
                f.add_rule(seccomp.ALLOW, name)
            except (ValueError, RuntimeError, OSError):
                pass  # not a syscall on this architecture
        for name in DEADLY_SYSCALLS:
            try:
                f.add_rule(seccomp.KILL_PROCESS, name)
            except (ValueError, RuntimeError, OSError):
                pass
        f.set_attr(seccomp.Attr.CTL_TSYNC, 1)
        f.load()
    except Exception as exc:  # libseccomp missing or the kernel refusing
        return Layer("seccomp", False, f"filter not loaded: {exc}")
    return Layer("seccomp", True, f"{len(ALLOWED_SYSCALLS)} syscalls allowed, the rest EPERM, exec kills; all threads")
