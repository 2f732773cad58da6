#!/usr/bin/python3
"""
lossy-fs: a FUSE file system that forgets, at a power cut, everything not yet made durable.

Shoal acknowledges an upload only after its bytes, its name and its row are on disk. To test that
claim the disk must be able to lose what was *not* on disk, which a real disk only does when the
power goes. Device-mapper's dm-flakey would do it on a block device; this is the same idea one
level up (in the spirit of Jepsen's LazyFS): a pass-through file system that keeps every change
not yet made durable in its own memory, and forgets all of them when told to "crash".

    lossy-fs.py mount BACKING MOUNTPOINT [--ordered-metadata]
        Serves MOUNTPOINT from BACKING, in the foreground. Prints {"event": "mounted"} once the
        mount is up. `umount MOUNTPOINT` is a clean stop: everything is made durable first, as a
        real unmount writes everything back.
    lossy-fs.py crash MOUNTPOINT
        Power cut: the daemon serving MOUNTPOINT prints what it discards and exits at once
        (SIGUSR1); the dead mount is detached. Mount BACKING again to see what survived.
        SIGKILL of the daemon is the same cut without the report.

BACKING holds only what is durable: `state.json` (the durable directory tree and inode
attributes) and `data/<inode>` (each regular file's durable bytes). It is rewritten only when an
fsync makes something durable, so whenever the daemon dies, BACKING is exactly the disk after a
power cut. Reads of bytes that did not change since the last fsync pass through to `data/`.

What is durable (the model; the guarantees fsync(2) gives on Linux, which ext4 keeps):

  File data. write(2), truncate and writes through a shared mmap change the file in memory
  only. fsync(2) or fdatasync(2) of any descriptor of the file makes its whole current content
  and size durable (the kernel writes dirty mmap pages back before it sends the fsync). Until
  then a crash brings back the content of the last fsync, whole: this model loses *every*
  unsynced write. A real disk may keep some of them, in any order, or half of one; those crash
  states are not produced here (see below).

  Names. create, mkdir, mknod, symlink, link, unlink, rmdir and rename change the directory
  tree in memory only. fsync(2) of a directory makes durable every name change made so far in
  that directory. A rename is one atomic change to two directories (as in ext4's journal): the
  fsync of either directory makes the whole rename durable, and with it, so that each
  directory's durable history stays a prefix of its real one, every earlier change in the other
  directory, and so on transitively. An fsync of a file makes none of its names durable, and
  the fsync of a directory says nothing about that directory's own name in its parent: a new
  directory survives only once its parent has been fsync'd (fsync(2): "an explicit fsync() on
  a file descriptor for the directory is also needed"). What is unreachable from the root after
  a crash (a file or directory whose name never became durable) is gone, synced data included.

  --ordered-metadata instead models a journaling file system's ordered metadata (ext4, xfs):
  an fsync of a directory makes durable every name change made anywhere up to its own last
  change, as a journal commit does. Real ext4 is stronger still: any fsync commits the running
  transaction, names included. The default is the weaker per-directory rule, so that a missing
  directory fsync is caught, not hidden behind the journal.

  Attributes. A new inode's mode and owner become durable with its name; chmod/chown later
  become durable with an fsync of the file. Timestamps are not kept across a crash (a file comes
  back with the time its bytes were last made durable). Extended attributes, fallocate and
  file locks over FUSE are not offered: the kernel keeps POSIX locks itself, which is all
  SQLite needs on one machine.

  O_SYNC/O_DSYNC writes are durable when they return: the kernel follows each with an fsync.

Not modelled: sync(2)/syncfs(2) (FUSE does not pass them on, so they make nothing durable
here), partial survival or reordering of unsynced writes (one crash state is produced, the
one where nothing unsynced survives; tools like ALICE or CrashMonkey explore the others),
torn sectors, disks that lie about flushes, and errors (EIO, ENOSPC) of its own. BACKING
itself is not fsync'd: the host is not the thing that loses power here.

SQLite: WAL mode maps the -shm file with MAP_SHARED. FUSE supports that only for files opened
without direct_io, so files are opened with the page cache (never direct_io); dirty mapped
pages reach this daemon on writeback and are unsynced data like any other (SQLite never fsyncs
-shm and rebuilds it after a crash). The page cache is dropped on every open (keep_cache off),
and after a crash the file system is mounted anew, so no cached page outlives what it forgot.
Locks: pyfuse3 registers no lock handlers, so the kernel does POSIX (fcntl) locking locally.

Needs Python 3 with pyfuse3 (Debian: python3-pyfuse3) and /dev/fuse; mount as root.
"""

import argparse
import bisect
import errno
import json
import os
import signal
import stat
import sys
import time

import pyfuse3
import trio

ROOT = pyfuse3.ROOT_INODE
# The daemon is the only way into the tree, so the kernel may cache names and attributes freely;
# after a crash the mount is new and the cache with it.
CACHE_SECONDS = 60
STATE = 'state.json'
DATA = 'data'
PID_FILE = 'lossy-fs.pid'


class Overlay:
    """Bytes written since the last fsync, as sorted extents that neither overlap nor touch."""

    def __init__(self):
        self.starts = []
        self.bufs = []

    def __len__(self):
        return sum(len(b) for b in self.bufs)

    def clear(self):
        self.starts, self.bufs = [], []

    def extents(self):
        return zip(self.starts, self.bufs)

    def write(self, off, data):
        end = off + len(data)
        # Extents i..j-1 overlap or touch [off, end); their union with it is one run of bytes.
        i = bisect.bisect_left(self.starts, off)
        if i > 0 and self.starts[i - 1] + len(self.bufs[i - 1]) >= off:
            i -= 1
        j = i
        while j < len(self.starts) and self.starts[j] <= end:
            j += 1
        if i == j:
            self.starts.insert(i, off)
            self.bufs.insert(i, bytearray(data))
            return
        if self.starts[i] <= off:
            # Grows the first extent in place: sequential appends (a blob, a WAL) cost no copy.
            start, buf = self.starts[i], self.bufs[i]
            for k in range(i + 1, j):
                rel = self.starts[k] - start
                if rel > len(buf):
                    buf.extend(bytes(rel - len(buf)))
                buf[rel : rel + len(self.bufs[k])] = self.bufs[k]
            rel = off - start
            buf[rel : rel + len(data)] = data
        else:
            start, buf = off, bytearray(data)
            last_start, last = self.starts[j - 1], self.bufs[j - 1]
            if last_start + len(last) > end:
                buf += last[end - last_start :]
        self.starts[i:j] = [start]
        self.bufs[i:j] = [buf]

    def read_into(self, out, off):
        """Lays the extents over out, which holds the bytes from off on."""
        end = off + len(out)
        i = bisect.bisect_right(self.starts, off)
        if i > 0:
            i -= 1
        while i < len(self.starts) and self.starts[i] < end:
            s, b = self.starts[i], self.bufs[i]
            lo, hi = max(s, off), min(s + len(b), end)
            if lo < hi:
                out[lo - off : hi - off] = b[lo - s : hi - s]
            i += 1

    def truncate(self, size):
        i = bisect.bisect_left(self.starts, size)
        del self.starts[i:], self.bufs[i:]
        if i > 0 and self.starts[i - 1] + len(self.bufs[i - 1]) > size:
            del self.bufs[i - 1][size - self.starts[i - 1] :]


class FileData:
    """A regular file: its durable bytes in BACKING/data/<ino>, and what changed since in memory."""

    def __init__(self, path, durable_size):
        self.path = path
        self.durable_size = durable_size
        self.size = durable_size
        # Durable bytes below floor are still part of the file; a truncate since the last fsync
        # lowered it, and whatever is written again above it lives in the overlay.
        self.floor = durable_size
        self.overlay = Overlay()

    def dirty(self):
        return len(self.overlay.starts) > 0 or self.size != self.durable_size or self.floor != self.size

    def unsynced_bytes(self):
        return len(self.overlay) + abs(self.size - self.floor)

    def read(self, off, length):
        end = min(off + length, self.size)
        if off >= end:
            return b''
        out = bytearray(end - off)
        from_disk = min(end, self.floor)
        if from_disk > off:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                chunk = os.pread(fd, from_disk - off, off)
            finally:
                os.close(fd)
            out[: len(chunk)] = chunk
        self.overlay.read_into(out, off)
        return bytes(out)

    def write(self, off, data):
        self.overlay.write(off, data)
        self.size = max(self.size, off + len(data))

    def truncate(self, size):
        self.overlay.truncate(size)
        self.size = size
        self.floor = min(self.floor, size)

    def sync(self):
        if not self.dirty():
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if self.floor < self.durable_size:
                os.ftruncate(fd, self.floor)
            for start, buf in self.overlay.extents():
                view = memoryview(buf)
                while view:
                    n = os.pwrite(fd, view, start)
                    view, start = view[n:], start + n
            os.ftruncate(fd, self.size)
        finally:
            os.close(fd)
        self.durable_size = self.floor = self.size
        self.overlay.clear()


class Inode:
    def __init__(self, ino, kind, mode, uid, gid, now_ns):
        self.ino = ino
        self.kind = kind  # 'dir', 'file' or 'symlink'
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.atime_ns = self.mtime_ns = self.ctime_ns = now_ns
        self.nlink = 0  # names in the live tree
        self.lookups = 0  # the kernel's references (lookup/forget)
        self.opens = 0
        self.entries = {} if kind == 'dir' else None  # name (bytes) -> ino
        self.parent = None  # a directory's parent, for '..'
        self.data = None  # FileData of a regular file
        self.target = None  # a symlink's target (bytes)

    def record(self):
        """What a name change makes durable about the inode it names."""
        rec = {'kind': self.kind, 'mode': self.mode, 'uid': self.uid, 'gid': self.gid}
        if self.kind == 'symlink':
            rec['target'] = os.fsdecode(self.target)
        return rec


class Change:
    """One name change not yet durable: the directories it touched and how to replay it."""

    def __init__(self, dirs, op, *args):
        self.dirs = frozenset(dirs)
        self.op = op
        self.args = args


class LossyFs(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, backing, ordered_metadata):
        super().__init__()
        self.backing = backing
        self.ordered_metadata = ordered_metadata
        self.data_dir = os.path.join(backing, DATA)
        self.inodes = {}
        self.handles = {}  # fh -> Inode (files)
        self.dir_handles = {}  # fh -> [ino, snapshot of entries or None]
        self.next_fh = 1
        self.pending = []  # Changes in the order they were made
        self.durable = {'inodes': {}, 'entries': {}}  # ino -> record; dir ino -> {name: ino}
        self.next_ino = ROOT + 1

    # -- durable state -----------------------------------------------------------------------

    def load(self, root_stat):
        os.makedirs(self.data_dir, exist_ok=True)
        path = os.path.join(self.backing, STATE)
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            records = {int(k): v for k, v in saved['inodes'].items()}
            entries = {
                int(d): {os.fsencode(n): int(i) for n, i in names.items()} for d, names in saved['entries'].items()
            }
            self.next_ino = saved['next_ino']
        else:
            records = {
                ROOT: {
                    'kind': 'dir',
                    'mode': stat.S_IFDIR | stat.S_IMODE(root_stat.st_mode),
                    'uid': root_stat.st_uid,
                    'gid': root_stat.st_gid,
                }
            }
            entries = {ROOT: {}}
        # What survives is what the root reaches, each directory once; the rest (a file whose
        # name never became durable, a directory made in a parent never fsync'd) is gone.
        now = time.time_ns()
        reached = {ROOT}
        queue = [ROOT]
        self.inodes[ROOT] = self.inode_from(ROOT, records[ROOT], now)
        while queue:
            d = queue.pop()
            kept = {}
            for name, ino in sorted(entries.get(d, {}).items()):
                rec = records.get(ino)
                if rec is None or (rec['kind'] == 'dir' and ino in reached):
                    continue
                kept[name] = ino
                if ino not in reached:
                    reached.add(ino)
                    self.inodes[ino] = self.inode_from(ino, rec, now)
                    if rec['kind'] == 'dir':
                        self.inodes[ino].parent = d
                        queue.append(ino)
                self.inodes[ino].nlink += 1
            self.inodes[d].entries = dict(kept)
            self.durable['entries'][d] = kept
        self.durable['inodes'] = {ino: records[ino] for ino in reached}
        self.inodes[ROOT].nlink = 1
        for name in os.listdir(self.data_dir):
            if not name.isdigit() or int(name) not in reached:
                os.unlink(os.path.join(self.data_dir, name))
            self.next_ino = max(self.next_ino, int(name) + 1 if name.isdigit() else 0)
        self.next_ino = max([self.next_ino] + [i + 1 for i in reached])
        self.save()

    def inode_from(self, ino, rec, now):
        inode = Inode(ino, rec['kind'], rec['mode'], rec['uid'], rec['gid'], now)
        if rec['kind'] == 'file':
            path = self.data_path(ino)
            try:
                st = os.stat(path)
                size, inode.mtime_ns = st.st_size, st.st_mtime_ns
            except FileNotFoundError:
                size = 0
            inode.data = FileData(path, size)
        elif rec['kind'] == 'symlink':
            inode.target = os.fsencode(rec['target'])
        return inode

    def data_path(self, ino):
        return os.path.join(self.data_dir, str(ino))

    def save(self):
        saved = {
            'next_ino': self.next_ino,
            'inodes': {str(k): v for k, v in self.durable['inodes'].items()},
            'entries': {
                str(d): {os.fsdecode(n): i for n, i in names.items()} for d, names in self.durable['entries'].items()
            },
        }
        tmp = os.path.join(self.backing, STATE + '.tmp')
        with open(tmp, 'w') as f:
            json.dump(saved, f)
        # Atomic against this daemon's own death (the only crash there is here).
        os.replace(tmp, os.path.join(self.backing, STATE))

    def record_change(self, dirs, op, *args):
        self.pending.append(Change(dirs, op, *args))

    def replay(self, change):
        entries = self.durable['entries']
        if change.op == 'link':
            parent, name, ino, rec = change.args
            self.durable['inodes'][ino] = rec
            entries.setdefault(parent, {})[name] = ino
            if rec['kind'] == 'dir':
                entries.setdefault(ino, {})
        elif change.op == 'unlink':
            parent, name = change.args
            entries.setdefault(parent, {}).pop(name, None)
        elif change.op == 'rename':
            old_parent, old_name, new_parent, new_name, ino, rec = change.args
            entries.setdefault(old_parent, {}).pop(old_name, None)
            entries.setdefault(new_parent, {})[new_name] = ino
            self.durable['inodes'].setdefault(ino, rec)

    def commit_directory(self, dir_ino):
        """fsync(2) of a directory: makes its name changes durable (see the header for which)."""
        touching = [k for k, c in enumerate(self.pending) if dir_ino in c.dirs]
        if not touching:
            return
        if self.ordered_metadata:
            chosen = set(range(touching[-1] + 1))
        else:
            # Newest first: a change joins when it shares a directory with one already chosen,
            # so every directory involved commits a prefix of its own changes.
            dirs, chosen = {dir_ino}, set()
            for k in range(len(self.pending) - 1, -1, -1):
                if self.pending[k].dirs & dirs:
                    chosen.add(k)
                    dirs |= self.pending[k].dirs
        for k in sorted(chosen):
            self.replay(self.pending[k])
        self.pending = [c for k, c in enumerate(self.pending) if k not in chosen]
        self.save()

    def sync_file(self, inode):
        """fsync(2) of a file: its bytes and size, and changed mode or owner if it has a durable name."""
        inode.data.sync()
        rec = self.durable['inodes'].get(inode.ino)
        if rec is not None and rec != inode.record():
            self.durable['inodes'][inode.ino] = inode.record()
            self.save()

    def make_everything_durable(self):
        """A clean unmount writes everything back, like a real one."""
        for inode in self.inodes.values():
            if inode.data is not None:
                inode.data.sync()
        for change in self.pending:
            self.replay(change)
        self.pending = []
        self.save()

    def unsynced(self):
        files = [i.data for i in self.inodes.values() if i.data is not None and i.data.dirty()]
        return {
            'namespaceChanges': len(self.pending),
            'files': len(files),
            'bytes': sum(f.unsynced_bytes() for f in files),
        }

    # -- helpers ------------------------------------------------------------------------------

    def get(self, ino):
        inode = self.inodes.get(ino)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return inode

    def directory(self, ino):
        inode = self.get(ino)
        if inode.kind != 'dir':
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    def attrs(self, inode):
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode.ino
        a.generation = 0
        a.entry_timeout = CACHE_SECONDS
        a.attr_timeout = CACHE_SECONDS
        a.st_mode = inode.mode
        if inode.kind == 'dir':
            a.st_nlink = 2 + sum(1 for i in inode.entries.values() if self.inodes[i].kind == 'dir')
            a.st_size = 4096
        else:
            a.st_nlink = inode.nlink
            a.st_size = inode.data.size if inode.data is not None else len(inode.target)
        a.st_uid = inode.uid
        a.st_gid = inode.gid
        a.st_rdev = 0
        a.st_blksize = 4096
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = inode.atime_ns
        a.st_mtime_ns = inode.mtime_ns
        a.st_ctime_ns = inode.ctime_ns
        return a

    def new_inode(self, parent, name, kind, mode, ctx):
        p = self.directory(parent)
        if name in p.entries:
            raise pyfuse3.FUSEError(errno.EEXIST)
        now = time.time_ns()
        inode = Inode(self.next_ino, kind, mode, ctx.uid, ctx.gid, now)
        self.next_ino += 1
        if kind == 'file':
            inode.data = FileData(self.data_path(inode.ino), 0)
        elif kind == 'dir':
            inode.parent = parent
        self.inodes[inode.ino] = inode
        return p, inode

    def add_name(self, p, name, inode):
        p.entries[name] = inode.ino
        p.mtime_ns = p.ctime_ns = time.time_ns()
        inode.nlink += 1
        inode.lookups += 1
        self.record_change({p.ino}, 'link', p.ino, name, inode.ino, inode.record())

    def maybe_free(self, inode):
        if inode.ino != ROOT and inode.nlink == 0 and inode.lookups <= 0 and inode.opens <= 0:
            # Its durable bytes stay in data/ while a durable name may still point at them;
            # the next mount drops whatever the root no longer reaches.
            self.inodes.pop(inode.ino, None)

    # -- FUSE operations ----------------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx):
        p = self.directory(parent_inode)
        if name == b'.':
            ino = p.ino
        elif name == b'..':
            ino = p.parent if p.parent is not None else ROOT
        else:
            ino = p.entries.get(name)
            if ino is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
        inode = self.get(ino)
        inode.lookups += 1
        return self.attrs(inode)

    async def forget(self, inode_list):
        for ino, n in inode_list:
            inode = self.inodes.get(ino)
            if inode is not None:
                inode.lookups -= n
                self.maybe_free(inode)

    async def getattr(self, inode, ctx):
        return self.attrs(self.get(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        i = self.get(inode)
        now = time.time_ns()
        if fields.update_size:
            if i.data is None:
                raise pyfuse3.FUSEError(errno.EINVAL)
            i.data.truncate(attr.st_size)
            i.mtime_ns = now
        if fields.update_mode:
            i.mode = stat.S_IFMT(i.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            i.uid = attr.st_uid
        if fields.update_gid:
            i.gid = attr.st_gid
        if fields.update_atime:
            i.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            i.mtime_ns = attr.st_mtime_ns
        i.ctime_ns = attr.st_ctime_ns if fields.update_ctime else now
        return self.attrs(i)

    async def readlink(self, inode, ctx):
        i = self.get(inode)
        if i.kind != 'symlink':
            raise pyfuse3.FUSEError(errno.EINVAL)
        return i.target

    async def mkdir(self, parent_inode, name, mode, ctx):
        p, inode = self.new_inode(parent_inode, name, 'dir', stat.S_IFDIR | stat.S_IMODE(mode), ctx)
        self.add_name(p, name, inode)
        return self.attrs(inode)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)
        p, inode = self.new_inode(parent_inode, name, 'file', stat.S_IFREG | stat.S_IMODE(mode), ctx)
        self.add_name(p, name, inode)
        return self.attrs(inode)

    async def symlink(self, parent_inode, name, target, ctx):
        p, inode = self.new_inode(parent_inode, name, 'symlink', stat.S_IFLNK | 0o777, ctx)
        inode.target = target
        self.add_name(p, name, inode)
        return self.attrs(inode)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        i = self.get(inode)
        if i.kind == 'dir':
            raise pyfuse3.FUSEError(errno.EPERM)
        p = self.directory(new_parent_inode)
        if new_name in p.entries:
            raise pyfuse3.FUSEError(errno.EEXIST)
        self.add_name(p, new_name, i)
        i.ctime_ns = time.time_ns()
        return self.attrs(i)

    async def create(self, parent_inode, name, mode, flags, ctx):
        p, inode = self.new_inode(parent_inode, name, 'file', stat.S_IFREG | stat.S_IMODE(mode), ctx)
        self.add_name(p, name, inode)
        return self.open_handle(inode), self.attrs(inode)

    def remove_name(self, p, name):
        ino = p.entries.pop(name)
        p.mtime_ns = p.ctime_ns = time.time_ns()
        self.record_change({p.ino}, 'unlink', p.ino, name)
        inode = self.inodes[ino]
        inode.nlink -= 1
        inode.ctime_ns = p.mtime_ns
        self.maybe_free(inode)

    async def unlink(self, parent_inode, name, ctx):
        p = self.directory(parent_inode)
        ino = p.entries.get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if self.inodes[ino].kind == 'dir':
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.remove_name(p, name)

    async def rmdir(self, parent_inode, name, ctx):
        p = self.directory(parent_inode)
        ino = p.entries.get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if self.inodes[ino].kind != 'dir':
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if self.inodes[ino].entries:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        self.remove_name(p, name)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old, new = self.directory(parent_inode_old), self.directory(parent_inode_new)
        ino = old.entries.get(name_old)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        replaced = new.entries.get(name_new)
        if replaced == ino:
            return
        moving = self.inodes[ino]
        if replaced is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            target = self.inodes[replaced]
            if moving.kind == 'dir' and target.kind != 'dir':
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            if moving.kind != 'dir' and target.kind == 'dir':
                raise pyfuse3.FUSEError(errno.EISDIR)
            if target.kind == 'dir' and target.entries:
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        del old.entries[name_old]
        new.entries[name_new] = ino
        if moving.kind == 'dir':
            moving.parent = new.ino
        now = time.time_ns()
        old.mtime_ns = old.ctime_ns = new.mtime_ns = new.ctime_ns = moving.ctime_ns = now
        self.record_change({old.ino, new.ino}, 'rename', old.ino, name_old, new.ino, name_new, ino, moving.record())
        if replaced is not None:
            target.nlink -= 1
            self.maybe_free(target)

    def open_handle(self, inode):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = inode
        inode.opens += 1
        # Never direct_io: the kernel allows a shared writable mmap (SQLite's -shm) only through
        # the page cache. keep_cache off drops cached pages at every open.
        return pyfuse3.FileInfo(fh=fh, direct_io=False, keep_cache=False)

    async def open(self, inode, flags, ctx):
        i = self.get(inode)
        if i.data is None:
            raise pyfuse3.FUSEError(errno.EISDIR if i.kind == 'dir' else errno.EINVAL)
        return self.open_handle(i)

    async def read(self, fh, off, size):
        return self.handles[fh].data.read(off, size)

    async def write(self, fh, off, buf):
        inode = self.handles[fh]
        inode.data.write(off, buf)
        inode.mtime_ns = inode.ctime_ns = time.time_ns()
        return len(buf)

    async def flush(self, fh):
        # close(2) makes nothing durable.
        pass

    async def release(self, fh):
        inode = self.handles.pop(fh)
        inode.opens -= 1
        self.maybe_free(inode)

    async def fsync(self, fh, datasync):
        self.sync_file(self.handles[fh])

    async def opendir(self, inode, ctx):
        self.directory(inode)
        fh = self.next_fh
        self.next_fh += 1
        self.dir_handles[fh] = [inode, None]
        return fh

    async def readdir(self, fh, start_id, token):
        handle = self.dir_handles[fh]
        d = self.directory(handle[0])
        if start_id == 0 or handle[1] is None:
            # Positions index this snapshot, so entries added or removed meanwhile can neither
            # be skipped nor listed twice.
            handle[1] = sorted(d.entries.items())
        snapshot = handle[1]
        for k in range(start_id, len(snapshot)):
            name, ino = snapshot[k]
            if d.entries.get(name) != ino:
                continue
            inode = self.inodes[ino]
            if not pyfuse3.readdir_reply(token, name, self.attrs(inode), k + 1):
                break
            inode.lookups += 1

    async def releasedir(self, fh):
        self.dir_handles.pop(fh, None)

    async def fsyncdir(self, fh, datasync):
        self.commit_directory(self.dir_handles[fh][0])

    async def statfs(self, ctx):
        st = os.statvfs(self.backing)
        s = pyfuse3.StatvfsData()
        for field in ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files', 'f_ffree', 'f_favail'):
            setattr(s, field, getattr(st, field))
        s.f_namemax = st.f_namemax
        return s

    async def access(self, inode, mode, ctx):
        self.get(inode)
        return True


def mount(args):
    backing, mountpoint = os.path.abspath(args.backing), os.path.abspath(args.mountpoint)
    os.makedirs(backing, exist_ok=True)
    fs = LossyFs(backing, args.ordered_metadata)
    fs.load(os.stat(mountpoint))

    def power_cut(_signum, _frame):
        # Runs between two bytecodes of the only thread: whatever an operation under way had not
        # written to BACKING yet is lost with the rest, as a write under way is at a power cut.
        report(dict(event='crashed', discarded=fs.unsynced()))
        os._exit(0)

    signal.signal(signal.SIGUSR1, power_cut)
    options = set(pyfuse3.default_options)
    # The mount names its backing dir, which is how `crash MOUNTPOINT` finds the daemon.
    options.add('fsname=' + backing)
    options.add('subtype=lossy-fs')
    pyfuse3.init(fs, mountpoint, options)
    with open(os.path.join(backing, PID_FILE), 'w') as f:
        f.write(f'{os.getpid()}\n')
    report(dict(event='mounted', pid=os.getpid(), mountpoint=mountpoint, backing=backing))
    try:
        trio.run(pyfuse3.main)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    # Unmounted: a clean stop, so nothing is lost.
    fs.make_everything_durable()
    pyfuse3.close(unmount=False)
    os.unlink(os.path.join(backing, PID_FILE))
    report(dict(event='unmounted'))


def crash(args):
    mountpoint = os.path.abspath(args.mountpoint)
    backing = None
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            sep = fields.index('-')
            if unescape(fields[4]) == mountpoint and fields[sep + 1] == 'fuse.lossy-fs':
                backing = unescape(fields[sep + 2])
    if backing is None:
        sys.exit(f'lossy-fs: nothing of ours is mounted on {mountpoint}')
    with open(os.path.join(backing, PID_FILE)) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGUSR1)
    # Its death closes /dev/fuse; the mount stays behind, answering ENOTCONN, until detached.
    while os.path.exists(f'/proc/{pid}') and not is_zombie(pid):
        time.sleep(0.01)
    os.execvp('umount', ['umount', '-l', mountpoint])


def is_zombie(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except FileNotFoundError:
        return True


def unescape(field):
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, k = '', 0
    while k < len(field):
        if field[k] == '\\' and field[k + 1 : k + 4].isdigit():
            out += chr(int(field[k + 1 : k + 4], 8))
            k += 4
        else:
            out += field[k]
            k += 1
    return out


def report(event):
    sys.stdout.write(json.dumps(event) + '\n')
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    sub = parser.add_subparsers(dest='command', required=True)
    m = sub.add_parser('mount', help='serve MOUNTPOINT from BACKING in the foreground')
    m.add_argument('backing')
    m.add_argument('mountpoint')
    m.add_argument(
        '--ordered-metadata',
        action='store_true',
        help="a directory fsync also makes every earlier name change elsewhere durable (a journal's order)",
    )
    c = sub.add_parser('crash', help='cut the power of the lossy-fs mounted on MOUNTPOINT')
    c.add_argument('mountpoint')
    args = parser.parse_args()
    if args.command == 'mount':
        mount(args)
    else:
        crash(args)


if __name__ == '__main__':
    main()
