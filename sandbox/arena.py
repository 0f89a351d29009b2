"""Shared memory for windows: arrays go to the worker without being encoded or piped.

The supervisor makes one arena per worker: a memfd of fixed size, mapped read-write
on its side, then sealed (no shrinking, no growing, no new writable mapping, no more
seals). The worker inherits the descriptor, maps it read-only before its seccomp
filter loads, and closes it: from then on it can read the arena and nothing else
about it. A window's arrays are written into the arena for each call; the request
carries only (offset, count) descriptors. The worker reads them through read-only
numpy views on the mapping and, by default (SandboxLimits.copy_windows), hands user
code private read-only copies: one memcpy, no encoding, no pipe transfer.

Sealing matters because the worker is not trusted: it cannot make the arena smaller
under the supervisor (a SIGBUS in the agent), and cannot write into it
(F_SEAL_FUTURE_WRITE refuses its writable mappings and write(), and mprotect cannot
upgrade its read-only one).

Views straight into the arena (copy_windows=False: no copy at all) are valid for one
call only: the next call overwrites the arena, so a module that kept such an array in
a global would see it change. That is why copies are the default.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
from collections.abc import Mapping

import numpy as np

F_SEAL_FUTURE_WRITE = 0x0010  # Linux 5.1; not in Python 3.11's fcntl
ALIGN = 64  # every array starts on a cache line
ITEM = np.dtype(np.float64).itemsize


class ArenaTooSmall(ValueError):
    def __init__(self, needed: int, size: int) -> None:
        super().__init__(f"the window needs {needed} bytes of arena, it has {size}")
        self.needed = needed
        self.size = size


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def window_bytes(window: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """How much arena a window takes (float64 t and v per signal, aligned)."""
    return sum(_aligned(np.size(t) * ITEM) + _aligned(np.size(v) * ITEM) for t, v in window.values())


class Arena:
    """The supervisor's side: owns the memfd and writes windows into it."""

    def __init__(self, size: int) -> None:
        size = max(ALIGN, _aligned(size))
        self.size = size
        self.fd = os.memfd_create("oodida-arena", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, size)
            self._map = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
            try:
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals | F_SEAL_FUTURE_WRITE)
                self.write_sealed = True
            except OSError:  # a kernel before 5.1: the worker could write, never resize
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals)
                self.write_sealed = False
        except BaseException:
            os.close(self.fd)
            raise
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)

    def place(self, window: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[int]]:
        """Write every signal's t and v as float64; {name: [t_offset, t_count, v_offset, v_count]}.

        Raises ArenaTooSmall when the window does not fit, ValueError for arrays
        that are not one-dimensional numbers.
        """
        needed = window_bytes(window)
        if needed > self.size:
            raise ArenaTooSmall(needed, self.size)
        out: dict[str, list[int]] = {}
        offset = 0
        for name, (t, v) in window.items():
            desc = []
            for a in (t, v):
                a = np.asarray(a)
                if a.ndim != 1 or a.dtype.kind not in "biuf":
                    raise ValueError(f"window signal {name!r}: want 1-D numeric arrays, got {a.dtype} {a.shape}")
                n = a.shape[0]
                dst = self._bytes[offset:offset + n * ITEM].view(np.float64)
                dst[...] = a  # cast to float64 on the way in
                desc += [offset, n]
                offset += _aligned(n * ITEM)
            out[str(name)] = desc
        return out

    def close(self) -> None:
        if self.fd >= 0:
            del self._bytes
            try:
                self._map.close()
            except BufferError:  # a view of it is still alive somewhere: the GC unmaps it
                pass
            os.close(self.fd)
            self.fd = -1


class ArenaView:
    """The worker's side: a read-only mapping and views into it.

    Mapped with libc's mmap, not Python's: mmap.mmap keeps a dup() of the descriptor
    for as long as it lives, and the worker must hold no descriptor but its pipes.
    The mapping lives as long as the worker.
    """

    def __init__(self, fd: int, size: int) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_long)
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                err = ctypes.get_errno()
                raise OSError(err, f"cannot map the arena: {os.strerror(err)}")
        finally:
            os.close(fd)
        self.size = size
        memory = (ctypes.c_ubyte * size).from_address(addr)
        self._bytes = np.frombuffer(memoryview(memory).cast("B").toreadonly(), dtype=np.uint8)

    def array(self, offset: int, count: int) -> np.ndarray:
        if (
            type(offset) is not int or type(count) is not int or offset < 0 or count < 0
            or offset % ITEM or offset + count * ITEM > self.size
        ):
            raise ValueError(f"bad arena descriptor ({offset!r}, {count!r})")
        arr = self._bytes[offset:offset + count * ITEM].view(np.float64)
        arr.flags.writeable = False  # already so (the buffer is read-only); say it twice
        return arr

    def signal_arrays(self, desc: object) -> tuple[np.ndarray, np.ndarray]:
        if not (isinstance(desc, list) and len(desc) == 4):
            raise ValueError(f"bad window descriptor {desc!r}")
        return self.array(desc[0], desc[1]), self.array(desc[2], desc[3])
