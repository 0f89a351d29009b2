"""The operating-system layers of the sandbox worker, applied by the worker at its start.

Every function here returns a `Layer`: its name, whether it took, and a detail that
says what exactly (or why not). A host that cannot give a layer (no root for the uid
switch, no libseccomp, a kernel without unprivileged user namespaces) gets a worker
that says so in its "ready" message, and the supervisor logs it: nothing fails
silently.

The worker applies them in this order (worker.main and worker.confine), and the
order matters:

1. arena            (worker.py) map the shared-memory arena read-only, close its fd
2. descriptors      close everything but the two pipes and 0, 1, 2
3. network ns       unshare(CLONE_NEWNET) as root, else CLONE_NEWUSER|CLONE_NEWNET
4. imports          everything the worker will ever need is imported and touched
                    now, while the interpreter's files are still readable: after the
                    uid switch they may not be (a pyenv Python under /root, mode
                    0700, is unreadable by nobody), and after the filter no file can
                    be opened at all
5. unprivileged uid setgroups([]), setresgid, setresuid (65534 "nobody" by default)
6. capabilities     empty effective, permitted and inheritable sets (capset)
7. no_new_privs     PR_SET_NO_NEW_PRIVS
8. not dumpable     PR_SET_DUMPABLE 0 (no ptrace by same-uid processes, no core)
9. parent death     PR_SET_PDEATHSIG SIGKILL: set after the uid switch, which clears it
10. rlimits         address space, CPU seconds, open files, file size 0, no core,
                    no new processes
11. seccomp         allow-list filter, EPERM by default, exec kills; TSYNC

A worker forked from the zygote (zygote.py) gets 3 and 4 from it (the zygote
unshares its network namespace and warms up once, for all its workers) and applies
2 and 5-11 itself, after the fork and before it reads a request.

Namespaces and the uid switch need privileges that no_new_privs, the dropped uid
and the filter then take away for good.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from collections.abc import Iterable
from dataclasses import dataclass

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PROT_EXEC = 0x4

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Layer:
    name: str
    applied: bool
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "applied": self.applied, "detail": self.detail}


def _errno_text() -> str:
    code = ctypes.get_errno()
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


def _prctl(option: int, arg: int) -> bool:
    result: int = _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    return result == 0


# --- descriptors ------------------------------------------------------------------------


def close_descriptors(keep: Iterable[int]) -> Layer:
    """Close every descriptor but `keep` (close_range over the gaps, so it is O(gaps))."""
    kept = sorted(set(keep))
    low = 0
    for fd in kept + [2**31 - 1]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    # listdir itself opens (and closes) one descriptor; anything else left is a leak.
    try:
        left = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    except OSError:  # forked from the zygote, whose filter refuses open: probe every number instead
        left = [fd for fd in range(resource.getrlimit(resource.RLIMIT_NOFILE)[0]) if _fd_is_open(fd)]
    stray = [fd for fd in left if fd not in kept and _fd_is_open(fd)]
    if stray:
        return Layer("descriptors", False, f"descriptors {stray} could not be closed")
    return Layer("descriptors", True, f"closed all but {kept}")


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# --- network namespace ---------------------------------------------------------------------


def network_namespace() -> Layer:
    """A new, empty network namespace: no interface but a loopback that is down."""
    if os.geteuid() == 0:
        if _libc.unshare(CLONE_NEWNET) == 0:
            return Layer("network namespace", True, "own empty network namespace (unshare CLONE_NEWNET)")
        return Layer("network namespace", False, f"unshare(CLONE_NEWNET) failed ({_errno_text()})")
    # Unprivileged: a user namespace makes the network namespace possible. The worker
    # then holds capabilities inside that user namespace only; they are dropped by
    # drop_capabilities, and the seccomp filter refuses unshare, mount, setns.
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return Layer("network namespace", True, "own empty network namespace (in a new user namespace)")
    return Layer(
        "network namespace", False,
        f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed ({_errno_text()}); unprivileged user namespaces are off here",
    )


# --- uid and capabilities --------------------------------------------------------------------


def drop_privileges(uid: int, gid: int | None = None) -> Layer:
    """Run as an unprivileged uid: no supplementary groups, real = effective = saved."""
    gid = uid if gid is None else gid
    if os.geteuid() != 0:
        return Layer("unprivileged uid", True, f"not root: runs as uid {os.geteuid()}")
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        return Layer("unprivileged uid", False, f"cannot switch to uid {uid}: {exc.strerror}")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        return Layer("unprivileged uid", False, f"uid switch to {uid} did not stick")
    return Layer("unprivileged uid", True, f"uid {uid}, gid {gid}, no supplementary groups")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> Layer:
    """Empty effective, permitted and inheritable sets (capset, v3). After a switch
    from root they are empty already; in a new user namespace they are not."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        return Layer("capabilities", False, f"capset failed ({_errno_text()})")
    return Layer("capabilities", True, "none")


# --- prctl -------------------------------------------------------------------------------------


def no_new_privs() -> Layer:
    if not _prctl(PR_SET_NO_NEW_PRIVS, 1):
        return Layer("no_new_privs", False, _errno_text())
    return Layer("no_new_privs", True, "PR_SET_NO_NEW_PRIVS 1")


def not_dumpable() -> Layer:
    if not _prctl(PR_SET_DUMPABLE, 0):
        return Layer("not dumpable", False, _errno_text())
    return Layer("not dumpable", True, "PR_SET_DUMPABLE 0")


def parent_death_signal(expected_parent: int | None) -> Layer:
    """SIGKILL when the supervisor dies, so a worker stuck in a loop never outlives it.
    (`expected_parent` None: started under another parent, e.g. strace; no check.)"""
    if not _prctl(PR_SET_PDEATHSIG, signal.SIGKILL):
        return Layer("parent death signal", False, _errno_text())
    if expected_parent is not None and os.getppid() != expected_parent:  # it died before the signal was armed
        os._exit(1)
    return Layer("parent death signal", True, "SIGKILL when the supervisor exits")


# --- rlimits -----------------------------------------------------------------------------------


def rlimits(memory_bytes: int, cpu_seconds: int, open_files: int) -> Layer:
    """Hard limits, never to be raised again (hard = soft, but for CPU: the soft limit
    sends SIGXCPU, the hard one SIGKILL 5 s later). RLIMIT_NPROC 0: with the uid
    switched, no new process or thread can be made (the filter refuses clone too).
    Threads count: the worker's numeric libraries are single-threaded (WORKER_ENV)."""
    limits = {
        "RLIMIT_AS": (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        "RLIMIT_CPU": (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5),
        "RLIMIT_NOFILE": (resource.RLIMIT_NOFILE, open_files, open_files),
        "RLIMIT_FSIZE": (resource.RLIMIT_FSIZE, 0, 0),
        "RLIMIT_CORE": (resource.RLIMIT_CORE, 0, 0),
        "RLIMIT_NPROC": (resource.RLIMIT_NPROC, 0, 0),
    }
    failed = []
    for name, (which, soft, hard) in limits.items():
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            failed.append(f"{name}: {exc}")
    if failed:
        return Layer("rlimits", False, "; ".join(failed))
    return Layer(
        "rlimits", True,
        f"address space {memory_bytes >> 20} MiB, CPU {cpu_seconds} s, {open_files} files, "
        "file size 0, no core, no new processes",
    )


# --- seccomp -----------------------------------------------------------------------------------

# What the worker's loop needs once everything is imported. Found by running it under
# strace with the filter off, then on (tests/sandbox/test_worker.py,
# test_the_loop_uses_only_allowed_syscalls, repeats this with the filter on): good
# modules using every facade, errors, MemoryError at the address-space limit,
# RecursionError, print floods, warnings, windows through the arena and inline,
# large and refused results. The loop itself calls only read, write, mmap, munmap,
# brk, madvise, clock_gettime (its CPU time), getpid and exit_group. The rest of the
# list is what glibc and CPython may need on paths that run rarely: realloc of large
# blocks (mremap), lock contention (futex), clocks without a vDSO, signal delivery
# and abort() (rt_sig*, gettid, tgkill to itself). Everything else fails with EPERM
# (an OSError in Python; "can't start new thread" for clone): open, socket, clone,
# fork, kill of another process, ptrace, prctl, setrlimit, unshare, mount, ...
ALLOWED_SYSCALLS = (
    "munmap", "mremap", "brk", "madvise",
    "futex", "sched_yield",
    "clock_gettime", "clock_getres", "gettimeofday",
    "getrandom",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "restart_syscall",
    "getpid", "gettid", "getppid",
    "close", "exit", "exit_group",
)
# Allowed only with arguments we can name: reads from the request pipe, writes to
# the reply pipe, stdout and stderr (/dev/null and a drained pipe in the worker);
# memory maps that are never executable; signals to itself (abort() uses tgkill).
CONDITIONAL_SYSCALLS = ("read", "write", "mmap", "mprotect", "kill", "tgkill")
# Nothing legitimate in the loop calls these; an attempt means an escape: kill.
DEADLY_SYSCALLS = ("execve", "execveat")


# What the zygote never needs once warmed (it only receives requests, forks, reaps and
# answers), refused for it and so for every worker before the worker's own filter
# loads: files, sockets, other processes' memory, namespaces, the kernel's keys,
# modules and tracing. A deny-list (the zygote's needs are fork's and the workers'
# set-up: prctl, setresuid, capset, setrlimit, seccomp, mmap of the arena); each
# worker then adds its own allow-list on top.
ZYGOTE_DENIED = (
    "open", "openat", "openat2", "creat", "truncate", "link", "linkat", "symlink", "symlinkat", "unlink",
    "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "chmod",
    "fchmodat", "chown", "fchownat", "lchown", "socket", "socketpair", "connect", "bind", "listen", "accept",
    "accept4", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot",
    "setns", "unshare", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "init_module",
    "finit_module", "delete_module", "kexec_load", "reboot", "swapon", "swapoff", "userfaultfd", "io_uring_setup",
)


def zygote_filter() -> Layer:
    """The zygote's own filter: ZYGOTE_DENIED fail with EPERM, exec kills; TSYNC."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:
        return Layer("zygote seccomp", False, f"pyseccomp/libseccomp not available: {exc}")
    try:
        f = sc.SyscallFilter(defaction=sc.ALLOW)
        f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
        f.set_attr(sc.Attr.CTL_NNP, 1)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)
        denied = 0
        for name in ZYGOTE_DENIED:
            try:
                f.add_rule(sc.ERRNO(errno.EPERM), name)
                denied += 1
            except OSError:
                continue  # not a syscall on this architecture
        for name in DEADLY_SYSCALLS:
            f.add_rule(sc.KILL_PROCESS, name)
        f.load()
    except Exception as exc:  # noqa: BLE001
        return Layer("zygote seccomp", False, f"filter not loaded: {type(exc).__name__}: {exc}")
    return Layer("zygote seccomp", True, f"{denied} syscalls refused (files, sockets, tracing, namespaces, "
                 f"kernel keys and modules), {'/'.join(DEADLY_SYSCALLS)} kill; TSYNC")


def seccomp_filter(read_fds: Iterable[int], write_fds: Iterable[int]) -> Layer:
    try:
        import pyseccomp as sc  # imported (and libseccomp loaded) earlier by the worker
    except (ImportError, RuntimeError, OSError) as exc:
        return Layer("seccomp", False, f"pyseccomp/libseccomp not available: {exc}")
    pid = os.getpid()
    try:
        f = sc.SyscallFilter(defaction=sc.ERRNO(errno.EPERM))
        f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # i386/x32 entry points: kill
        f.set_attr(sc.Attr.CTL_NNP, 1)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)
        unknown = []
        for name in ALLOWED_SYSCALLS:
            try:
                f.add_rule(sc.ALLOW, name)
            except OSError:
                unknown.append(name)  # not a syscall on this architecture
        for fd in read_fds:
            f.add_rule(sc.ALLOW, "read", sc.Arg(0, sc.EQ, fd))
        for fd in write_fds:
            f.add_rule(sc.ALLOW, "write", sc.Arg(0, sc.EQ, fd))
        for name in ("mmap", "mprotect"):
            f.add_rule(sc.ALLOW, name, sc.Arg(2, sc.MASKED_EQ, PROT_EXEC, 0))
        for name in ("kill", "tgkill"):
            f.add_rule(sc.ALLOW, name, sc.Arg(0, sc.EQ, pid))
        for name in DEADLY_SYSCALLS:
            f.add_rule(sc.KILL_PROCESS, name)
        f.load()
    except Exception as exc:  # noqa: BLE001 — the kernel or libseccomp refused: say so
        return Layer("seccomp", False, f"filter not loaded: {type(exc).__name__}: {exc}")
    allowed = len(ALLOWED_SYSCALLS) - len(unknown) + len(CONDITIONAL_SYSCALLS)
    return Layer(
        "seccomp", True,
        f"{allowed} syscalls allowed (read/write on its pipes only, no executable maps), "
        f"the rest EPERM, {'/'.join(DEADLY_SYSCALLS)} kill; synchronised to all threads (TSYNC)",
    )
