"""A stand-in for the interposer, in Python, speaking src/track/protocol.h.

A program run under `metamori run` uses Tracer to make changes to the tree
and record them exactly as the interposer would (in-flight region, gate,
records), so the session's side can be tested on chosen record sequences
independently of the real interposer.
"""
import ctypes
import fcntl
import mmap
import os
import struct
import time

MAGIC = 0x544D544D
VERSION = 2
HDR = 64
WRITE, TRUNC, WHOLE, META, NS, SCAN, RELEASE = 1, 2, 3, 4, 5, 6, 7

# struct mtm_log_hdr offsets
O_MAGIC, O_VERSION, O_PID, O_INFLIGHT, O_TAIL, O_EPOCH, O_CAPACITY, O_OVERFLOW = 0, 4, 8, 12, 16, 24, 32, 40
# struct mtm_ctl offsets
C_GATE, C_SCAN_NEEDED, C_EPOCH = 8, 12, 16

_libc = ctypes.CDLL(None, use_errno=True)
SYS_futex = 202  # x86_64
FUTEX_WAKE = 1


class Tracer:
    def __init__(self, capacity=1 << 20):
        self.session = os.environ["METAMORI_SESSION"]
        self.root = os.environ["METAMORI_ROOT"]
        fd = os.open(os.path.join(self.session, "ctl"), os.O_RDWR)
        self.ctl = mmap.mmap(fd, 4096)
        os.close(fd)
        assert struct.unpack_from("<I", self.ctl, 0)[0] == MAGIC
        self.pid = os.getpid()
        self.fd = os.open(os.path.join(self.session, "log.%d" % self.pid), os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, HDR + capacity)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.log = mmap.mmap(self.fd, HDR + capacity)
        struct.pack_into("<IiIQQQI", self.log, O_VERSION, VERSION, self.pid, 0, 0,
                         struct.unpack_from("<Q", self.ctl, C_EPOCH)[0], capacity, 0)
        struct.pack_into("<I", self.log, O_MAGIC, MAGIC)
        self.capacity = capacity

    def _get(self, off, fmt="<I", buf=None):
        return struct.unpack_from(fmt, buf if buf is not None else self.log, off)[0]

    def _put(self, off, v, fmt="<I"):
        struct.pack_into(fmt, self.log, off, v)

    def enter(self):
        while True:
            self._put(O_INFLIGHT, self._get(O_INFLIGHT) + 1)
            if not self._get(C_GATE, buf=self.ctl):
                return
            self._put(O_INFLIGHT, self._get(O_INFLIGHT) - 1)
            self._wake()
            while self._get(C_GATE, buf=self.ctl):
                time.sleep(0.001)

    def leave(self):
        self._put(O_INFLIGHT, self._get(O_INFLIGHT) - 1)
        if self._get(C_GATE, buf=self.ctl):
            self._wake()

    def _wake(self):
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.log, O_INFLIGHT))
        _libc.syscall(SYS_futex, ctypes.c_void_p(addr), FUTEX_WAKE, 0x7fffffff, None, None, 0)

    def record(self, typ, path="", a=0, b=0):
        p = path.encode()
        size = 24 + ((len(p) + 7) & ~7)
        tail = self._get(O_TAIL, "<Q")
        if tail + size > self.capacity:
            self._put(O_OVERFLOW, 1)
            return
        # the seal (protocol.h): MTM_SEAL(ctl->epoch), as the interposer writes it
        seal = (struct.unpack_from("<Q", self.ctl, C_EPOCH)[0] * 2 + 1) & 0xFFFFFFFF
        rec = struct.pack("<HHIQQ", typ, len(p), seal, a, b) + p + b"\0" * (size - 24 - len(p))
        self.log[HDR + tail:HDR + tail + size] = rec
        self._put(O_TAIL, tail + size, "<Q")

    def op(self, fn, *records):
        """Runs fn() inside the in-flight region, then appends the records."""
        self.enter()
        try:
            r = fn()
            for rec in records:
                self.record(*rec)
            return r
        finally:
            self.leave()

    def full(self, rel):
        return os.path.join(self.root, rel)

    # the calls, each as the interposer would record it
    def pwrite(self, rel, off, data, create=False):
        def f():
            fd = os.open(self.full(rel), os.O_WRONLY | (os.O_CREAT if create else 0), 0o644)
            os.pwrite(fd, data, off)
            os.close(fd)
        recs = [(NS, rel)] if create else []
        return self.op(f, *(recs + [(WRITE, rel, off, len(data))]))

    def create(self, rel, data=b""):
        def f():
            with open(self.full(rel), "wb") as fh:
                fh.write(data)
        return self.op(f, (NS, rel), (TRUNC, rel, 0, 0), (WRITE, rel, 0, len(data)))

    def append(self, rel, data):
        def f():
            fd = os.open(self.full(rel), os.O_WRONLY | os.O_APPEND)
            off = os.fstat(fd).st_size
            os.write(fd, data)
            os.close(fd)
            return off
        self.enter()
        try:
            off = f()
            self.record(WRITE, rel, off, len(data))
        finally:
            self.leave()

    def truncate(self, rel, size):
        return self.op(lambda: os.truncate(self.full(rel), size), (TRUNC, rel, size, 0))

    def rename(self, a, b):
        return self.op(lambda: os.rename(self.full(a), self.full(b)), (NS, a), (NS, b))

    def unlink(self, rel):
        return self.op(lambda: os.unlink(self.full(rel)), (NS, rel))

    def rmdir(self, rel):
        return self.op(lambda: os.rmdir(self.full(rel)), (NS, rel))

    def mkdir(self, rel):
        return self.op(lambda: os.mkdir(self.full(rel)), (NS, rel))

    def symlink(self, target, rel):
        return self.op(lambda: os.symlink(target, self.full(rel)), (NS, rel))

    def chmod(self, rel, mode):
        return self.op(lambda: os.chmod(self.full(rel), mode), (META, rel))
