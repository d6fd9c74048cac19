"""Helpers for the interposer's tests: a fake session directory (ctl as
`metamori run` makes it, protocol.h) and a reader for the log.PID files.

Tests run real programs with LD_PRELOAD=$METAMORI_PRELOAD and the session
settings, then read what they recorded."""
import ctypes
import glob
import mmap
import os
import struct
import subprocess
import time

PRELOAD = os.environ.get("METAMORI_PRELOAD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "libmetamori-preload.so")
BIN = os.environ.get("METAMORI_TRACK_BIN") or os.path.dirname(PRELOAD)

MAGIC = 0x544d544d
VERSION = 2
HDR = 64
CTL = struct.Struct("<IIIIQII")          # magic version gate scan_needed epoch session_pid pad
LOGHDR = struct.Struct("<IIiIQQQIIQ")    # magic version pid inflight tail epoch capacity overflow pad peeked
REC = struct.Struct("<HHIQQ")
WRITE, TRUNC, WHOLE, META, NS, SCAN, RELEASE, CODE = range(1, 9)
NAMES = {1: "WRITE", 2: "TRUNC", 3: "WHOLE", 4: "META", 5: "NS", 6: "SCAN", 7: "RELEASE", 8: "CODE"}

_libc = ctypes.CDLL(None, use_errno=True)


class Session:
    """ROOT/.metamori/session with a ctl file mapped here, so tests can close
    and open the gate."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.dir = os.path.join(self.root, ".metamori", "session")
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "ctl")
        with open(path, "wb") as f:
            f.write(CTL.pack(MAGIC, VERSION, 0, 0, 1, os.getpid(), 0).ljust(4096, b"\0"))
        self.fd = os.open(path, os.O_RDWR)
        self.map = mmap.mmap(self.fd, 4096, mmap.MAP_SHARED)

    def env(self, extra=None):
        env = dict(os.environ)
        env.update({"LD_PRELOAD": PRELOAD, "METAMORI_SESSION": self.dir, "METAMORI_ROOT": self.root})
        env.update(extra or {})
        return env

    def run(self, args, check=True, env=None, cwd=None, **kw):
        p = subprocess.run(args, env=env or self.env(), cwd=cwd or self.root,
                           capture_output=True, text=True, **kw)
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (args, p.returncode, p.stdout, p.stderr))
        return p

    def ctl(self):
        return CTL.unpack_from(self.map, 0)

    def set_gate(self, v):
        struct.pack_into("<I", self.map, 8, v)
        if not v:  # FUTEX_WAKE (1), not private: the word is in a shared file
            addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map, 8))
            _libc.syscall(202, ctypes.c_void_p(addr), 1, 0x7fffffff, None, None, 0)

    def logs(self):
        """{pid: Log} for every log.PID in the session dir."""
        out = {}
        for p in glob.glob(os.path.join(self.dir, "log.*")):
            lg = Log(p)
            out[int(p.rsplit(".", 1)[1])] = lg
        return out

    def records(self):
        """All records of all logs, as (type name, path, a, b) tuples."""
        recs = []
        for lg in self.logs().values():
            recs += lg.recs
        return recs

    def reset(self):
        for p in glob.glob(os.path.join(self.dir, "log.*")):
            os.unlink(p)

    def barrier(self, alive=lambda pid: True):
        """What a checkpoint does: close the gate, wait until no process is
        inside a call, read and reset every log, bump the epoch. Returns the
        records. The caller opens the gate again (set_gate(0))."""
        self.set_gate(1)
        time.sleep(0.001)  # a system call: the gate store is globally visible
        recs = []
        for p in sorted(glob.glob(os.path.join(self.dir, "log.*"))):
            fd = os.open(p, os.O_RDWR)
            try:
                if os.fstat(fd).st_size < HDR:
                    continue
                m = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED)
                if struct.unpack_from("<I", m, 0)[0] != MAGIC:
                    m.close()
                    continue  # being created: nothing recorded yet
                while struct.unpack_from("<I", m, 12)[0] and locked(p):
                    time.sleep(0.0005)
                recs += Log(p).recs
                struct.pack_into("<Q", m, 16, 0)  # tail
                struct.pack_into("<I", m, 40, 0)  # overflow
                m.close()
            finally:
                os.close(fd)
        epoch = struct.unpack_from("<Q", self.map, 16)[0]
        struct.pack_into("<Q", self.map, 16, epoch + 1)
        return recs

    def close(self):
        self.map.close()
        os.close(self.fd)


class Log:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(HDR)
            (self.magic, self.version, self.pid, self.inflight, self.tail, self.epoch,
             self.capacity, self.overflow, _, self.peeked) = LOGHDR.unpack_from(head, 0)
            data = f.read(self.tail)
        assert self.magic == MAGIC and self.version == VERSION, "bad log header in %s" % path
        self.recs = []
        off = 0
        while off < len(data):
            t, plen, seal, a, b = REC.unpack_from(data, off)
            # every complete record is sealed: MTM_SEAL(epoch) is odd (protocol.h)
            assert seal % 2 == 1, "unsealed record at %d in %s" % (off, path)
            off += REC.size
            p = data[off:off + plen].decode()
            off += (plen + 7) & ~7
            self.recs.append((NAMES.get(t, t), p, a, b))

    def locked(self):
        """True while some process holds its shared lock (it lives)."""
        return locked(self.path)


def locked(path):
    """True while some process holds the shared lock of log path."""
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def extents(recs, path, kind="WRITE"):
    """Merged [start, end) of the kind records on path, sorted."""
    iv = sorted((a, a + b) for t, p, a, b in recs if t == kind and p == path)
    out = []
    for s, e in iv:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def kinds(recs, path):
    """Set of record type names seen for path."""
    return {t for t, p, a, b in recs if p == path}
