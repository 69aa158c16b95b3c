#!/usr/bin/env python3
"""Stress driver for a bucketfs mount (run by scripts/stress.sh; not part of CI).

P worker processes run for N minutes, each in its own directory tree (ROOT/wNN/...)
plus a directory all of them share (ROOT/shared, where a worker's names start with
"wNN-"). Every worker keeps a model of what it wrote (path -> size, sha256) and mixes:

  create   O_CREAT|O_EXCL, random size (0 to 20 MiB, mostly small, some over one 8 MiB
           part), written sequentially in random chunks, sometimes with random-offset
           pwrite()s before close, sometimes fsync() mid-write or before close; then
           read back and sha256-compared
  modify   read an existing file (verified), reopen it without O_TRUNC and append
           (O_APPEND), pwrite at random offsets or ftruncate; close; read back
  reread   read a file again (half the time after POSIX_FADV_DONTNEED), compare
  rename   within a directory, across directories, into and out of the shared
           directory, sometimes over an existing file of its own
  unlink, mkdir, rmdir (and rmdir of a non-empty directory, which must be ENOTEMPTY),
  rename of a small directory
  list     os.listdir of one of its directories or the shared one: every file and
           directory it made (and has not removed or renamed away) must be listed and
           stat-able with the size it wrote ("listing misses" otherwise); a name of its
           own that it removed must not be listed ("ghosts")

At the end of the run each worker lists all its directories and re-reads every file
it holds (bounded in time). Counted per worker: operations, errors (any OSError where
none is expected), data mismatches, listing misses, ghosts.

Hang watchdog: every filesystem call a worker makes is timed through shared memory;
the main process checks once a second and, when one call has taken longer than
--hang-seconds (120), reports a hang and stops the run.

Every --report-every seconds (30) and at the end: ops/s, errors, mismatches, misses,
ghosts, hangs, and the bucketfs daemon's current and peak RSS (VmRSS, VmHWM). The last
line of output is one JSON object with all figures; the exit status is 1 when
errors + mismatches + listing misses + ghosts + hangs > 0.

Python 3 standard library only.
"""

import argparse
import ctypes
import errno
import hashlib
import json
import multiprocessing as mp
import os
import queue
import random
import signal
import sys
import time
import traceback
from datetime import datetime, timezone

KIB = 1024
MIB = 1024 * KIB

# Per-worker counters in shared memory (RawArray 'q', NCOUNT per worker).
C_OPS, C_ERRORS, C_MISMATCH, C_MISSES, C_GHOSTS, C_BYTES_W, C_BYTES_R, C_CLOSED, \
    C_PHASE, C_VERIFIED = range(10)
NCOUNT = 10
PHASES = {0: "starting", 1: "running", 2: "verifying", 3: "done"}

# Filesystem calls, for the watchdog (op_code) and per-call latency figures.
SYSCALLS = ["open", "write", "pwrite", "read", "fsync", "close", "fstat", "stat",
            "ftruncate", "fadvise", "rename", "unlink", "mkdir", "rmdir", "listdir",
            "lexists"]
SYS_CODE = {name: i for i, name in enumerate(SYSCALLS)}
PATH_LEN = 512

MAX_FILES_PER_WORKER = 120
MAX_BYTES_PER_WORKER = 256 * MIB
MAX_DIRS_PER_WORKER = 12
MAX_DEPTH = 3  # wNN/dA/dB/dC


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def errname(e):
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


class OpError(Exception):
    """An OSError from a timed call, with the call and path attached."""

    def __init__(self, call, path, err, elapsed):
        super().__init__(f"{call}({path}) -> {errname(err)} ({err.strerror}) after {elapsed:.3f}s")
        self.call = call
        self.path = path
        self.err = err
        self.errno = err.errno


def pick_size(rng, max_size):
    r = rng.random()
    if r < 0.05:
        size = 0
    elif r < 0.40:
        size = rng.randint(1, 4 * KIB)
    elif r < 0.65:
        size = rng.randint(4 * KIB, 256 * KIB)
    elif r < 0.82:
        size = rng.randint(256 * KIB, 2 * MIB)
    elif r < 0.92:
        size = rng.randint(2 * MIB, 8 * MIB)
    else:  # more than one 8 MiB part: a streamed multipart upload
        size = rng.randint(8 * MIB + 1, max(8 * MIB + 1, max_size))
    return min(size, max_size)


def pick_chunk(rng):
    return rng.choice([512, 4 * KIB, 64 * KIB, 128 * KIB, 1 * MIB,
                       rng.randint(1, 2 * MIB)])


class Worker:
    def __init__(self, idx, root, t_stop_mutating, t_end, shm, errq, resq, seed, max_size):
        self.idx = idx
        self.root = root
        self.t_stop_mutating = t_stop_mutating
        self.t_end = t_end
        self.op_start, self.op_code, self.paths, self.counters = shm
        self.errq = errq
        self.resq = resq
        self.rng = random.Random(seed)
        self.max_size = max_size
        self.base = f"w{idx:02d}"
        self.shared = "shared"
        self.prefix = f"{self.base}-"
        self.files = {}      # relpath -> (size, sha256 hex)
        self.dirs = {self.base}  # own directories, relpaths
        self.unknown = set()  # relpaths whose state an error made uncertain
        self.seq = 0
        self.ops = {}        # op -> [count, errors, total_s, max_s]
        self.calls = {}      # syscall -> [count, max_s]
        self.errors_sent = 0
        self.cur_op = "?"
        self.t0 = time.monotonic()
        self.hist = {}       # relpath -> recent events, for problem reports

    # ---- shared-memory helpers -------------------------------------------------------
    def count(self, c, n=1):
        self.counters[self.idx * NCOUNT + c] += n

    def set_phase(self, phase):
        self.counters[self.idx * NCOUNT + C_PHASE] = phase

    def abs(self, rel):
        return os.path.join(self.root, rel)

    def call(self, name, rel, fn, *args):
        """Run one filesystem call, visible to the watchdog, timed."""
        b = rel.encode("utf-8", "surrogateescape")[:PATH_LEN - 1]
        off = self.idx * PATH_LEN
        self.paths[off:off + len(b) + 1] = b + b"\0"
        self.op_code[self.idx] = SYS_CODE[name]
        t0 = time.monotonic()
        self.op_start[self.idx] = t0
        try:
            return fn(*args)
        except OSError as e:
            raise OpError(name, rel, e, time.monotonic() - t0) from None
        finally:
            dt = time.monotonic() - t0
            self.op_start[self.idx] = 0.0
            st = self.calls.setdefault(name, [0, 0.0])
            st[0] += 1
            if dt > st[1]:
                st[1] = dt

    # ---- reporting problems ------------------------------------------------------------
    def note(self, rel, event):
        h = self.hist.setdefault(rel, [])
        h.append(f"{utc_now()[11:23]} {event}")
        del h[:-6]
        if len(self.hist) > 20000:
            for k in list(self.hist)[:5000]:
                del self.hist[k]

    def history(self, rel):
        h = self.hist.get(rel)
        return f" [history of {rel}: {'; '.join(h)}]" if h else f" [no history of {rel}]"

    def report(self, kind, msg):
        if self.errors_sent < 100:
            self.errors_sent += 1
            try:
                self.errq.put((utc_now(), self.idx, kind, self.cur_op, msg), timeout=5)
            except Exception:
                pass

    def error(self, msg):
        self.count(C_ERRORS)
        self.ops.setdefault(self.cur_op, [0, 0, 0.0, 0.0])[1] += 1
        self.report("ERROR", msg)

    def mismatch(self, msg):
        self.count(C_MISMATCH)
        self.report("MISMATCH", msg)

    def miss(self, msg):
        self.count(C_MISSES)
        self.report("MISS", msg)

    def ghost(self, msg):
        self.count(C_GHOSTS)
        self.report("GHOST", msg)

    # ---- model helpers -----------------------------------------------------------------
    def fresh_name(self, dirrel, kind="f"):
        self.seq += 1
        name = f"{kind}{self.seq}"
        if kind == "f":
            r = self.rng.random()
            if r < 0.1:
                name += " ä x.dat"  # a space and a non-ASCII character in the key
            elif r < 0.4:
                name += self.rng.choice([".bin", ".txt", ".json", ".tar.gz", ""])
        if dirrel == self.shared:
            name = self.prefix + name
        return os.path.join(dirrel, name)

    def own_dirs_and_shared(self):
        return sorted(self.dirs) + [self.shared]

    def files_in(self, dirrel):
        return [p for p in self.files if os.path.dirname(p) == dirrel]

    def total_bytes(self):
        return sum(s for s, _ in self.files.values())

    def forget(self, rel, remove=True):
        """An error made rel's state uncertain: drop it from the model, try to remove it."""
        self.files.pop(rel, None)
        self.unknown.add(rel)
        self.note(rel, "state unknown after a problem")
        if not remove:
            return
        try:
            os.unlink(self.abs(rel))
        except OSError:
            pass
        try:
            if not os.path.lexists(self.abs(rel)):
                self.unknown.discard(rel)
        except OSError:
            pass

    def under(self, rel, dirrel):
        return rel == dirrel or rel.startswith(dirrel + "/")

    # ---- reading and verifying ---------------------------------------------------------
    def read_all(self, rel, drop_cache, keep=False):
        """Read rel to the end; returns (size from fstat, bytes read, sha256, data or None)."""
        p = self.abs(rel)
        fd = self.call("open", rel, os.open, p, os.O_RDONLY)
        h = hashlib.sha256()
        data = bytearray() if keep else None
        n = 0
        try:
            st_size = self.call("fstat", rel, os.fstat, fd).st_size
            if drop_cache:
                self.call("fadvise", rel, os.posix_fadvise, fd, 0, 0, os.POSIX_FADV_DONTNEED)
            chunk = self.rng.choice([64 * KIB, 128 * KIB, 1 * MIB])
            while True:
                b = self.call("read", rel, os.read, fd, chunk)
                if not b:
                    break
                h.update(b)
                n += len(b)
                if keep:
                    data += b
        finally:
            self.call("close", rel, os.close, fd)
        self.count(C_BYTES_R, n)
        return st_size, n, h.hexdigest(), data

    def verify(self, rel, expected=None, drop_cache=None):
        """Read rel back and compare with the model (and with expected bytes if given)."""
        size, digest = self.files[rel]
        if drop_cache is None:
            drop_cache = self.rng.random() < 0.5
        st_size, n, got, data = self.read_all(rel, drop_cache, keep=expected is not None)
        if n != size or got != digest or st_size != size:
            detail = ""
            if expected is not None and data is not None:
                m = min(len(data), len(expected))
                first = next((i for i in range(0, m, 4096)
                              if data[i:i + 4096] != expected[i:i + 4096]), None)
                if first is not None:
                    while first < m and data[first] == expected[first]:
                        first += 1
                    detail = f", first differing byte at {first}"
                elif len(data) != len(expected):
                    detail = f", common prefix of {m} bytes equal"
            self.mismatch(f"{rel}: wrote {size} bytes sha256 {digest[:16]}, read {n} bytes "
                          f"(fstat {st_size}) sha256 {got[:16]}{detail}"
                          f"{' (after FADV_DONTNEED)' if drop_cache else ''}{self.history(rel)}")
            self.forget(rel, remove=False)  # count each broken file once; keep it to inspect
            return False
        return True

    # ---- operations --------------------------------------------------------------------
    def op_create(self):
        self.cur_op = "create"
        dirs = self.own_dirs_and_shared()
        d = self.rng.choice(dirs)
        rel = self.fresh_name(d)
        size = pick_size(self.rng, self.max_size)
        buf = bytearray(os.urandom(size))
        p = self.abs(rel)
        fd = None
        try:
            fd = self.call("open", rel, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            chunk = pick_chunk(self.rng)
            mid_fsync = size > 0 and self.rng.random() < 0.05
            fsync_at = self.rng.randrange(size) if mid_fsync else -1
            off = 0
            view = memoryview(buf)
            while off < size:
                n = self.call("write", rel, os.write, fd, view[off:off + chunk])
                off += n
                if fsync_at >= 0 and off >= fsync_at:
                    self.call("fsync", rel, os.fsync, fd)
                    fsync_at = -1
            view.release()
            self.count(C_BYTES_W, size)
            if self.rng.random() < 0.25:  # random-offset rewrites before close
                for _ in range(self.rng.randint(1, 5)):
                    limit = len(buf) + (256 * KIB if self.rng.random() < 0.3 else 0)
                    o = self.rng.randint(0, max(0, limit))
                    ln = self.rng.randint(1, 256 * KIB)
                    patch = os.urandom(ln)
                    self.call("pwrite", rel, os.pwrite, fd, patch, o)
                    if o > len(buf):
                        buf += bytes(o - len(buf))
                    buf[o:o + ln] = patch
                    self.count(C_BYTES_W, ln)
            if self.rng.random() < 0.10:
                self.call("fsync", rel, os.fsync, fd)
            f, fd = fd, None
            self.call("close", rel, os.close, f)
        except OpError as e:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.error(f"create of {size} bytes: {e}")
            self.forget(rel)
            return
        self.files[rel] = (len(buf), hashlib.sha256(buf).hexdigest())
        self.note(rel, f"created, {len(buf)} bytes")
        self.count(C_CLOSED)
        try:
            self.verify(rel, expected=buf)
        except OpError as e:
            self.error(f"read-back: {e}")

    def op_modify(self):
        self.cur_op = "modify"
        if not self.files:
            return self.op_create()
        rel = self.rng.choice(sorted(self.files))
        size, _ = self.files[rel]
        try:
            st_size, n, got, data = self.read_all(rel, False, keep=True)
        except OpError as e:
            self.error(f"read before modify: {e}")
            return
        if got != self.files[rel][1] or n != size:
            self.mismatch(f"{rel}: before modify: expected {size} bytes, read {n} bytes, "
                          f"sha256 differs{self.history(rel)}")
            self.forget(rel, remove=False)
            return
        buf = data
        mode = self.rng.choice(["append", "pwrite", "pwrite", "truncate"])
        p = self.abs(rel)
        fd = None
        try:
            if mode == "append":
                fd = self.call("open", rel, os.open, p, os.O_WRONLY | os.O_APPEND)
                for _ in range(self.rng.randint(1, 3)):
                    b = os.urandom(self.rng.randint(1, 1 * MIB))
                    self.call("write", rel, os.write, fd, b)
                    buf += b
                    self.count(C_BYTES_W, len(b))
            else:
                fd = self.call("open", rel, os.open, p, os.O_RDWR)
                if mode == "truncate":
                    ln = self.rng.randint(0, len(buf) + 64 * KIB)
                    self.call("ftruncate", rel, os.ftruncate, fd, ln)
                    if ln < len(buf):
                        del buf[ln:]
                    else:
                        buf += bytes(ln - len(buf))
                for _ in range(self.rng.randint(1, 6)):
                    o = self.rng.randint(0, len(buf) + (64 * KIB if self.rng.random() < 0.2 else 0))
                    b = os.urandom(self.rng.randint(1, 128 * KIB))
                    self.call("pwrite", rel, os.pwrite, fd, b, o)
                    if o > len(buf):
                        buf += bytes(o - len(buf))
                    buf[o:o + len(b)] = b
                    self.count(C_BYTES_W, len(b))
            if self.rng.random() < 0.2:
                self.call("fsync", rel, os.fsync, fd)
            f, fd = fd, None
            self.call("close", rel, os.close, f)
        except OpError as e:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.error(f"modify ({mode}) of {size} bytes: {e}")
            self.forget(rel)
            return
        self.files[rel] = (len(buf), hashlib.sha256(buf).hexdigest())
        self.note(rel, f"modified ({mode}), {len(buf)} bytes")
        self.count(C_CLOSED)
        try:
            self.verify(rel, expected=buf)
        except OpError as e:
            self.error(f"read-back after {mode}: {e}")

    def op_reread(self):
        self.cur_op = "reread"
        if not self.files:
            return self.op_create()
        rel = self.rng.choice(sorted(self.files))
        try:
            self.verify(rel)
        except OpError as e:
            self.error(f"reread: {e}")

    def check_gone(self, rel, what):
        try:
            if self.call("lexists", rel, os.path.lexists, self.abs(rel)):
                self.ghost(f"{rel} still exists right after {what}: {self.describe(rel)}"
                           f"{self.history(rel)}")
        except OpError as e:
            self.error(f"lookup after {what}: {e}")

    def op_rename(self):
        self.cur_op = "rename"
        if not self.files:
            return self.op_create()
        src = self.rng.choice(sorted(self.files))
        sdir = os.path.dirname(src)
        r = self.rng.random()
        if sdir == self.shared:
            ddir = self.shared if r < 0.3 else self.rng.choice(sorted(self.dirs))
        elif r < 0.4:
            ddir = sdir
        elif r < 0.75:
            ddir = self.rng.choice(sorted(self.dirs))
        else:
            ddir = self.shared
        targets = [f for f in self.files_in(ddir) if f != src]
        replace = bool(targets) and self.rng.random() < 0.2
        dst = self.rng.choice(targets) if replace else self.fresh_name(ddir)
        try:
            self.call("rename", src, os.rename, self.abs(src), self.abs(dst))
        except OpError as e:
            self.error(f"rename {src} -> {dst}{' (replacing)' if replace else ''}: {e}")
            self.forget(src)
            if replace:
                self.forget(dst)
            return
        self.files[dst] = self.files.pop(src)
        self.note(src, f"renamed to {dst}")
        self.note(dst, f"renamed from {src}{' (replacing)' if replace else ''}")
        try:
            st = self.call("stat", dst, os.stat, self.abs(dst))
            if st.st_size != self.files[dst][0]:
                self.mismatch(f"{dst}: size {st.st_size} after rename from {src}, "
                              f"expected {self.files[dst][0]}")
        except OpError as e:
            if e.errno == errno.ENOENT:
                self.miss(f"{dst}: ENOENT right after rename from {src}")
            else:
                self.error(f"stat after rename: {e}")
        self.check_gone(src, f"rename to {dst}")
        if self.rng.random() < 0.3:
            try:
                self.verify(dst)
            except OpError as e:
                self.error(f"read after rename: {e}")

    def op_unlink(self):
        self.cur_op = "unlink"
        if not self.files:
            return self.op_create()
        rel = self.rng.choice(sorted(self.files))
        try:
            self.call("unlink", rel, os.unlink, self.abs(rel))
        except OpError as e:
            self.error(f"unlink: {e}")
            self.forget(rel)
            return
        del self.files[rel]
        self.note(rel, "unlinked")
        self.check_gone(rel, "unlink")

    def op_mkdir(self):
        self.cur_op = "mkdir"
        parents = [d for d in self.dirs if d.count("/") < MAX_DEPTH]
        if len(self.dirs) >= MAX_DIRS_PER_WORKER or not parents:
            return self.op_list()
        parent = self.rng.choice(sorted(parents))
        rel = self.fresh_name(parent, "d")
        try:
            self.call("mkdir", rel, os.mkdir, self.abs(rel), 0o755)
        except OpError as e:
            self.error(f"mkdir: {e}")
            self.unknown.add(rel)
            return
        self.dirs.add(rel)
        self.note(rel, "mkdir")

    def subdirs(self):
        return [d for d in self.dirs if d != self.base]

    def is_empty(self, d):
        return not any(self.under(x, d) and x != d
                       for x in list(self.files) + list(self.dirs) + list(self.unknown))

    def op_rmdir(self):
        self.cur_op = "rmdir"
        subs = self.subdirs()
        if not subs:
            return self.op_mkdir()
        empty = [d for d in subs if self.is_empty(d)]
        if empty and self.rng.random() < 0.8:
            d = self.rng.choice(sorted(empty))
            try:
                self.call("rmdir", d, os.rmdir, self.abs(d))
            except OpError as e:
                self.error(f"rmdir of an empty directory: {e}")
                self.unknown.add(d)
                self.dirs.discard(d)
                return
            self.dirs.discard(d)
            self.note(d, "rmdir")
            self.check_gone(d, "rmdir")
            return
        full = [d for d in subs if not self.is_empty(d)
                and any(self.under(f, d) for f in self.files)]
        if not full:
            return self.op_list()
        d = self.rng.choice(sorted(full))
        self.cur_op = "rmdir_nonempty"
        try:
            self.call("rmdir", d, os.rmdir, self.abs(d))
        except OpError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return  # expected
            self.error(f"rmdir of a non-empty directory: {e} (expected ENOTEMPTY)")
            return
        self.error(f"rmdir of non-empty {d} succeeded (expected ENOTEMPTY)")
        for f in [f for f in self.files if self.under(f, d)]:
            self.files.pop(f)
            self.unknown.add(f)
        for x in [x for x in self.dirs if self.under(x, d)]:
            self.dirs.discard(x)
            self.unknown.add(x)

    def op_rename_dir(self):
        self.cur_op = "rename_dir"
        subs = [d for d in self.subdirs()
                if sum(1 for f in self.files if self.under(f, d)) <= 10
                and not any(self.under(u, d) for u in self.unknown)]
        if not subs:
            return self.op_mkdir()
        src = self.rng.choice(sorted(subs))
        parents = [d for d in self.dirs if not self.under(d, src)
                   and d.count("/") + 1 + max(x.count("/") - src.count("/") for x in self.dirs
                                              if self.under(x, src)) <= MAX_DEPTH]
        if not parents:
            return self.op_list()
        dst = self.fresh_name(self.rng.choice(sorted(parents)), "d")
        try:
            self.call("rename", src, os.rename, self.abs(src), self.abs(dst))
        except OpError as e:
            self.error(f"rename of directory {src} -> {dst}: {e}")
            for f in [f for f in self.files if self.under(f, src)]:
                self.forget(f)
            return
        mv = lambda x: dst + x[len(src):] if self.under(x, src) else x  # noqa: E731
        for x in list(self.files) + list(self.dirs):
            if self.under(x, src):
                self.note(x, f"moved to {mv(x)} (directory rename)")
                self.note(mv(x), f"moved from {x} (directory rename)")
        self.files = {mv(k): v for k, v in self.files.items()}
        self.dirs = {mv(x) for x in self.dirs}
        self.check_gone(src, f"rename to {dst}")

    def check_dir(self, d):
        """List d; every file/dir of ours in the model must be listed and stat-able."""
        try:
            names = set(self.call("listdir", d, os.listdir, self.abs(d)))
        except OpError as e:
            self.error(f"listdir: {e}")
            return
        expected_files = self.files_in(d)
        expected_dirs = [x for x in self.dirs if os.path.dirname(x) == d]
        for rel in expected_files + expected_dirs:
            name = os.path.basename(rel)
            is_dir = rel in self.dirs
            if name not in names:
                self.miss(f"{rel}: {'directory' if is_dir else 'file'} missing from the "
                          f"listing of {d} ({len(names)} entries){self.history(rel)}")
                if not is_dir:
                    self.forget(rel, remove=False)  # count each missing file once
                continue
            try:
                st = self.call("stat", rel, os.stat, self.abs(rel))
            except OpError as e:
                if e.errno == errno.ENOENT:
                    self.miss(f"{rel}: listed in {d} but stat gives ENOENT{self.history(rel)}")
                    if not is_dir:
                        self.forget(rel, remove=False)
                else:
                    self.error(f"stat of a listed entry: {e}")
                continue
            if not is_dir and st.st_size != self.files[rel][0]:
                self.mismatch(f"{rel}: stat size {st.st_size}, expected {self.files[rel][0]}")
        mine = {os.path.basename(x) for x in expected_files + expected_dirs}
        unsure = {os.path.basename(x) for x in self.unknown if os.path.dirname(x) == d}
        for name in sorted(names - mine - unsure):
            if d != self.shared or name.startswith(self.prefix):
                rel = os.path.join(d, name)
                self.ghost(f"{rel}: listed in {d} but removed or never made; "
                           f"{self.describe(rel)}{self.history(rel)}")
                self.unknown.add(rel)  # count each ghost once

    def describe(self, rel):
        """What the mount says about an entry it should not have."""
        try:
            st = os.lstat(self.abs(rel))
        except OSError as e:
            return f"lstat: {errname(e)}"
        if os.path.isdir(self.abs(rel)):
            try:
                inside = sorted(os.listdir(self.abs(rel)))
            except OSError as e:
                return f"a directory (listdir: {errname(e)})"
            return f"a directory holding {len(inside)} entries {inside[:8]}"
        return f"a file of {st.st_size} bytes"

    def op_list(self):
        self.cur_op = "list"
        d = self.rng.choice(self.own_dirs_and_shared())
        self.check_dir(d)

    OPS = [("create", 30), ("modify", 6), ("reread", 12), ("rename", 15), ("unlink", 10),
           ("mkdir", 5), ("rmdir", 5), ("rename_dir", 2), ("list", 15)]

    def pick_op(self):
        weights = dict(self.OPS)
        if len(self.files) > MAX_FILES_PER_WORKER or self.total_bytes() > MAX_BYTES_PER_WORKER:
            weights["create"] = 5
            weights["unlink"] = 40
        names = list(weights)
        return self.rng.choices(names, [weights[n] for n in names])[0]

    def run_op(self, name):
        self.cur_op = name
        t0 = time.monotonic()
        try:
            getattr(self, "op_" + name)()
        except OpError as e:  # a call outside the handled ones: still an error
            self.error(f"{e}")
        except Exception:  # a bug in this driver: loud, and counted
            self.error("driver exception:\n" + traceback.format_exc())
        dt = time.monotonic() - t0
        st = self.ops.setdefault(self.cur_op, [0, 0, 0.0, 0.0])  # the op actually done
        st[0] += 1
        st[2] += dt
        st[3] = max(st[3], dt)
        self.count(C_OPS)

    def setup(self):
        self.cur_op = "setup"
        for d in (self.base,):
            try:
                self.call("mkdir", d, os.mkdir, self.abs(d), 0o755)
            except OpError as e:
                self.error(f"mkdir of the worker directory: {e}")

    def final_verify(self):
        self.set_phase(2)
        for d in self.own_dirs_and_shared():
            if time.monotonic() > self.t_end:
                break
            self.run_op_named("final-list", lambda d=d: self.check_dir(d))
        for rel in sorted(self.files):
            if time.monotonic() > self.t_end:
                break

            def v(rel=rel):
                try:
                    if self.verify(rel, drop_cache=True):
                        self.count(C_VERIFIED)
                except OpError as e:
                    self.error(f"final reread: {e}")
            self.run_op_named("final-reread", v)

    def run_op_named(self, name, fn):
        self.cur_op = name
        t0 = time.monotonic()
        try:
            fn()
        except Exception:
            self.error("driver exception:\n" + traceback.format_exc())
        dt = time.monotonic() - t0
        st = self.ops.setdefault(name, [0, 0, 0.0, 0.0])
        st[0] += 1
        st[2] += dt
        st[3] = max(st[3], dt)
        self.count(C_OPS)

    def main(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides
        self.set_phase(1)
        self.setup()
        while time.monotonic() < self.t_stop_mutating:
            self.run_op(self.pick_op())
        self.final_verify()
        self.set_phase(3)
        self.resq.put({"worker": self.idx, "ops": self.ops,
                       "calls": self.calls, "files": len(self.files),
                       "bytes_held": self.total_bytes(), "dirs": len(self.dirs),
                       "unknown": sorted(self.unknown)})


def worker_entry(*args):
    Worker(*args).main()


# ---- the daemon ----------------------------------------------------------------------

def find_daemon(mnt):
    """Pid of the process whose cmdline is `.../bucketfs mount ... MNT ...`."""
    mnt = os.path.realpath(mnt)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if len(argv) < 3 or os.path.basename(argv[0]) != "bucketfs" or "mount" not in argv[1:]:
            continue
        if any(os.path.realpath(a) == mnt for a in argv[2:] if a.startswith("/") or a.startswith(".")):
            found.append(int(pid))
    return min(found) if found else None


def mem_kib(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


# ---- main ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mount", help="the bucketfs mountpoint")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--report-every", type=float, default=30)
    ap.add_argument("--hang-seconds", type=float, default=120)
    ap.add_argument("--max-size-mib", type=float, default=20)
    ap.add_argument("--daemon-pid", type=int, default=None,
                    help="default: found by its command line")
    ap.add_argument("--no-daemon", action="store_true",
                    help="run against any directory (to test this driver)")
    ap.add_argument("--print-daemon-pid", metavar="MNT",
                    help="print the pid of the bucketfs daemon serving MNT and exit")
    a = ap.parse_args()

    if a.print_daemon_pid:
        pid = find_daemon(a.print_daemon_pid)
        if pid is None:
            return 1
        print(pid)
        return 0
    if not a.mount:
        ap.error("--mount is required")
    mnt = os.path.realpath(a.mount)
    daemon = None
    if not a.no_daemon:
        if not os.path.ismount(mnt):
            print(f"stress: {mnt} is not a mountpoint", file=sys.stderr)
            return 2
        daemon = a.daemon_pid or find_daemon(mnt)
        if daemon is None:
            print(f"stress: no bucketfs process serving {mnt} found", file=sys.stderr)
            return 2

    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    root = os.path.join(mnt, f"stress-{run_id}")
    os.mkdir(root)
    os.mkdir(os.path.join(root, "shared"))

    P = a.procs
    total = a.minutes * 60
    verify_budget = min(60.0, 0.15 * total)
    t0 = time.monotonic()
    t_stop_mutating = t0 + total - verify_budget
    t_end = t0 + total

    ctx = mp.get_context("fork")
    op_start = mp.RawArray(ctypes.c_double, P)
    op_code = mp.RawArray(ctypes.c_int, P)
    paths = mp.RawArray(ctypes.c_char, P * PATH_LEN)
    counters = mp.RawArray(ctypes.c_longlong, P * NCOUNT)
    errq = ctx.Queue()
    resq = ctx.Queue()

    print(f"[stress] mount {mnt} daemon pid {daemon} root {root} procs {P} "
          f"minutes {a.minutes} seed {seed} max size {a.max_size_mib} MiB "
          f"hang limit {a.hang_seconds:.0f}s", flush=True)

    procs = []
    for i in range(P):
        p = ctx.Process(target=worker_entry, name=f"stress-w{i:02d}",
                        args=(i, root, t_stop_mutating, t_end,
                              (op_start, op_code, paths, counters), errq, resq,
                              seed * 1000 + i, int(a.max_size_mib * MIB)))
        p.start()
        procs.append(p)

    interrupted = False

    def on_sigint(*_):
        nonlocal interrupted
        interrupted = True
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)

    hangs = []
    problems_printed = 0
    results = {}
    rss_samples = []
    peak_hwm = 0
    daemon_gone = False
    last_report = t0
    last_ops = 0

    def totals():
        t = [0] * NCOUNT
        for i in range(P):
            for c in range(NCOUNT):
                t[c] += counters[i * NCOUNT + c]
        return t

    def sample_mem():
        nonlocal peak_hwm, daemon_gone
        if daemon is None:
            return None
        m = mem_kib(daemon)
        if m is None:
            daemon_gone = True
            return None
        rss_samples.append(m.get("VmRSS", 0))
        peak_hwm = max(peak_hwm, m.get("VmHWM", 0))
        return m

    def drain():
        nonlocal problems_printed
        while True:
            try:
                when, w, kind, op, msg = errq.get_nowait()
            except queue.Empty:
                break
            problems_printed += 1
            if problems_printed <= 300:
                print(f"[stress] {when} w{w:02d} {kind} in {op}: {msg}", flush=True)
            elif problems_printed == 301:
                print("[stress] (further problem lines suppressed; counts stay exact)", flush=True)
        while True:
            try:
                r = resq.get_nowait()
            except queue.Empty:
                break
            results[r["worker"]] = r

    def report(final=False):
        nonlocal last_report, last_ops
        now = time.monotonic()
        t = totals()
        m = sample_mem()
        el = now - t0
        ivl = max(1e-9, now - last_report)
        phases = {}
        for i in range(P):
            ph = PHASES[counters[i * NCOUNT + C_PHASE]]
            phases[ph] = phases.get(ph, 0) + 1
        mem = (f"daemon RSS {m['VmRSS'] / 1024:.1f} MiB peak {m['VmHWM'] / 1024:.1f} MiB"
               if m else ("daemon GONE" if daemon is not None else "no daemon"))
        print(f"[stress] {'FINAL' if final else 'progress'} t={el:.0f}s ops={t[C_OPS]} "
              f"({t[C_OPS] / max(el, 1e-9):.1f}/s overall, {(t[C_OPS] - last_ops) / ivl:.1f}/s last "
              f"{ivl:.0f}s) written {t[C_BYTES_W] / MIB:.0f} MiB read {t[C_BYTES_R] / MIB:.0f} MiB "
              f"closed {t[C_CLOSED]} errors={t[C_ERRORS]} mismatches={t[C_MISMATCH]} "
              f"listing_misses={t[C_MISSES]} ghosts={t[C_GHOSTS]} hangs={len(hangs)} {mem} "
              f"workers {phases}", flush=True)
        last_report = now
        last_ops = t[C_OPS]

    sample_mem()
    stop_reason = None
    while True:
        time.sleep(0.5)
        drain()
        now = time.monotonic()
        for i in range(P):
            s = op_start[i]
            if s and now - s > a.hang_seconds and i not in [h["worker"] for h in hangs]:
                raw = bytes(paths[i * PATH_LEN:(i + 1) * PATH_LEN]).split(b"\0")[0]
                h = {"worker": i, "call": SYSCALLS[op_code[i]],
                     "path": raw.decode("utf-8", "replace"), "seconds": round(now - s, 1)}
                hangs.append(h)
                print(f"[stress] {utc_now()} HANG: w{i:02d} in {h['call']}({h['path']}) for "
                      f"{h['seconds']}s (limit {a.hang_seconds:.0f}s)", flush=True)
        if hangs:
            stop_reason = "hang"
            # Give every other call in flight a moment to show whether it hangs too.
            time.sleep(1)
            now = time.monotonic()
            for i in range(P):
                s = op_start[i]
                if s and now - s > a.hang_seconds and i not in [h["worker"] for h in hangs]:
                    raw = bytes(paths[i * PATH_LEN:(i + 1) * PATH_LEN]).split(b"\0")[0]
                    hangs.append({"worker": i, "call": SYSCALLS[op_code[i]],
                                  "path": raw.decode("utf-8", "replace"),
                                  "seconds": round(now - s, 1)})
            break
        if daemon is not None and mem_kib(daemon) is None:
            daemon_gone = True
            stop_reason = "daemon exited"
            print(f"[stress] {utc_now()} ERROR: the bucketfs daemon (pid {daemon}) is gone",
                  flush=True)
            break
        if interrupted:
            stop_reason = "interrupted"
            break
        if now - last_report >= a.report_every:
            report()
        if all(not p.is_alive() for p in procs):
            drain()
            stop_reason = "done"
            break
        if now > t_end + 2 * a.hang_seconds:
            stop_reason = "overran"
            print("[stress] workers overran the run by far; stopping them", flush=True)
            break

    if stop_reason != "done":
        # Stop the workers: SIGKILL also aborts a FUSE request they wait on.
        for p in procs:
            if p.is_alive():
                p.kill()
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
        drain()
    else:
        for p in procs:
            p.join(5)

    report(final=True)
    t = totals()
    el = time.monotonic() - t0
    per_op = {}
    per_call = {}
    for r in results.values():
        for k, (n, e, tot, mx) in r["ops"].items():
            o = per_op.setdefault(k, {"count": 0, "errors": 0, "total_s": 0.0, "max_s": 0.0})
            o["count"] += n
            o["errors"] += e
            o["total_s"] += tot
            o["max_s"] = max(o["max_s"], mx)
        for k, (n, mx) in r["calls"].items():
            c = per_call.setdefault(k, {"count": 0, "max_s": 0.0})
            c["count"] += n
            c["max_s"] = max(c["max_s"], mx)
    for o in per_op.values():
        o["mean_ms"] = round(1000 * o.pop("total_s") / max(1, o["count"]), 2)
        o["max_s"] = round(o["max_s"], 3)
    for c in per_call.values():
        c["max_s"] = round(c["max_s"], 3)
    for k in sorted(per_op):
        o = per_op[k]
        print(f"[stress]   op {k:<13} {o['count']:>7} done {o['errors']:>4} errors "
              f"mean {o['mean_ms']:>8.1f} ms max {o['max_s']:>7.3f} s", flush=True)
    slow = sorted(per_call.items(), key=lambda kv: -kv[1]["max_s"])[:5]
    print("[stress]   slowest calls: " + ", ".join(f"{k} {v['max_s']:.3f}s" for k, v in slow),
          flush=True)

    s3_stats = None
    if daemon is not None and not daemon_gone and stop_reason != "hang":
        try:
            s3_stats = json.loads(os.getxattr(mnt, "user.bucketfs.stats"))
        except Exception as e:  # informational only
            print(f"[stress] could not read user.bucketfs.stats: {e}", flush=True)

    errors = t[C_ERRORS] + (1 if daemon_gone else 0) + (1 if stop_reason == "overran" else 0)
    missing_results = [i for i in range(P) if i not in results]
    if stop_reason == "done" and missing_results:
        print(f"[stress] ERROR: workers {missing_results} exited without results", flush=True)
        errors += len(missing_results)
    final = {
        "result": "FAIL" if (errors + t[C_MISMATCH] + t[C_MISSES] + t[C_GHOSTS] + len(hangs)) else "PASS",
        "stop": stop_reason,
        "minutes": a.minutes, "procs": P, "seed": seed, "elapsed_s": round(el, 1),
        "ops": t[C_OPS], "ops_per_s": round(t[C_OPS] / max(el, 1e-9), 1),
        "files_closed": t[C_CLOSED], "files_verified_at_end": t[C_VERIFIED],
        "mib_written": round(t[C_BYTES_W] / MIB, 1), "mib_read": round(t[C_BYTES_R] / MIB, 1),
        "errors": errors, "mismatches": t[C_MISMATCH], "listing_misses": t[C_MISSES],
        "ghosts": t[C_GHOSTS], "hangs": len(hangs), "hang_details": hangs,
        "daemon_pid": daemon, "daemon_alive": (not daemon_gone) if daemon else None,
        "daemon_rss_peak_mib": round(peak_hwm / 1024, 1) if daemon else None,
        "daemon_rss_mib": round(rss_samples[-1] / 1024, 1) if rss_samples else None,
        "per_op": per_op, "per_call": per_call,
        "s3_requests": {k: v.get("requests") for k, v in s3_stats.items()
                        if isinstance(v, dict)} if isinstance(s3_stats, dict) else None,
        "s3_errors": {k: v.get("errors") for k, v in s3_stats.items()
                      if isinstance(v, dict) and v.get("errors")} if isinstance(s3_stats, dict) else None,
    }
    print(json.dumps(final, sort_keys=False), flush=True)
    rc = 0 if final["result"] == "PASS" else 1
    if stop_reason == "hang":
        # Workers stuck in the kernel may never be reaped; do not wait for them.
        sys.stdout.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
