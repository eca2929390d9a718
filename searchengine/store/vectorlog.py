"""The append-only change log beside a vector store's base file, so saving a batch costs the batch.

A store on disk is a base file (a FAISS index, then a trailer naming its *epoch*, a random token)
and `<base>.log`: a header with the epoch of the base it continues, then one record per change
(add: ids and vectors; remove: ids), each with a CRC of its bytes. Saving appends the changes since
the last save; compaction writes a new base (new epoch) and then a new, empty log. The store in memory
is the base plus the log's records in order, up to the first record that is torn or fails its CRC:

- a crash mid-append leaves a torn last record, which is ignored (and cut off by the next writer);
- a crash between a new base and its new log leaves the old log, whose epoch no longer matches:
  it is ignored whole, and the base already holds everything it said;
- a log without its base (deleted, damaged) is ignored too.

What the log does not hold, the metadata database does: opening reconciles the store with it.
No FAISS here, only bytes and numpy.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_write

LOG_MAGIC = b"SELOG001"
BASE_MAGIC = b"SEBASE01"
EPOCH_BYTES = 16
TRAILER = struct.Struct(f"<{EPOCH_BYTES}s8s")  # epoch, magic: the last bytes of a base file
RECORD = struct.Struct("<BII")  # op, rows, CRC32 of the payload
ADD, REMOVE, ADD_ASSIGNED = 1, 2, 3  # ADD_ASSIGNED: an IVF's adds with their lists (replay skips the quantiser)
HEADER_BYTES = len(LOG_MAGIC) + EPOCH_BYTES


def new_epoch() -> bytes:
    return secrets.token_bytes(EPOCH_BYTES)


def base_trailer(epoch: bytes) -> bytes:
    """What follows the FAISS bytes in a base file (FAISS reads its own bytes and ignores the rest)."""
    return TRAILER.pack(epoch, BASE_MAGIC)


def read_epoch(base: Path) -> bytes | None:
    """The epoch in a base file's trailer; None for a file without one (written before logs, or by hand)."""
    try:
        with open(base, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < TRAILER.size:
                return None
            handle.seek(-TRAILER.size, os.SEEK_END)
            epoch, magic = TRAILER.unpack(handle.read(TRAILER.size))
    except OSError:
        return None
    return epoch if magic == BASE_MAGIC else None


@dataclass
class Change:
    """One logged change: ADD (ids, vectors), ADD_ASSIGNED (ids, vectors, IVF lists) or REMOVE (ids)."""

    op: int
    ids: np.ndarray
    vectors: np.ndarray | None = None
    lists: np.ndarray | None = None


def encode(change: Change) -> bytes:
    payload = np.ascontiguousarray(change.ids, dtype="<i8").tobytes()
    if change.op == ADD_ASSIGNED:
        payload += np.ascontiguousarray(change.lists, dtype="<i8").tobytes()
    if change.op in (ADD, ADD_ASSIGNED):
        payload += np.ascontiguousarray(change.vectors, dtype="<f4").tobytes()
    return RECORD.pack(change.op, len(change.ids), zlib.crc32(payload)) + payload


def decode(data: bytes, start: int, dim: int) -> tuple[list[Change], int]:
    """The whole, intact records from `start`, and the offset just after the last of them."""
    changes, at = [], start
    while at + RECORD.size <= len(data):
        op, rows, crc = RECORD.unpack_from(data, at)
        if op not in (ADD, REMOVE, ADD_ASSIGNED):
            break
        head = rows * 8 * (2 if op == ADD_ASSIGNED else 1)  # ids, and the lists of assigned adds
        size = head + (rows * dim * 4 if op != REMOVE else 0)
        payload = data[at + RECORD.size:at + RECORD.size + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            break  # torn by a crash mid-append, or damaged: nothing after it can be trusted
        ids = np.frombuffer(payload[:rows * 8], dtype="<i8").astype(np.int64)
        lists = np.frombuffer(payload[rows * 8:head], dtype="<i8").astype(np.int64) if op == ADD_ASSIGNED else None
        vectors = np.frombuffer(payload[head:], dtype="<f4").reshape(rows, dim) if op != REMOVE else None
        changes.append(Change(op, ids, vectors, lists))
        at += RECORD.size + size
    return changes, at


class ChangeLog:
    """The log file of one base: reading what follows a position, appending, starting afresh."""

    def __init__(self, path: Path, dim: int):
        self.path = path
        self.dim = dim
        self.epoch: bytes | None = None  # the base epoch the records in memory continue
        self.end = 0  # offset after the last intact record read or written
        self.inode: int | None = None

    def read(self, epoch: bytes | None) -> list[Change]:
        """Every intact record of the log continuing the base of `epoch` (none when it continues another)."""
        self.epoch, self.end, self.inode = epoch, 0, None
        data = self._bytes(0)
        if epoch is None or data is None or data[:HEADER_BYTES] != LOG_MAGIC + epoch:
            return []
        changes, self.end = decode(data, HEADER_BYTES, self.dim)
        return changes

    def read_more(self) -> list[Change] | None:
        """Records appended since the last read; None when the file was replaced (read it all again)."""
        if self._inode() != self.inode:
            return None
        if self.end == 0:
            return []  # the same log that continued another base
        data = self._bytes(self.end)
        if not data:
            return []
        changes, used = decode(data, 0, self.dim)
        self.end += used
        return changes

    def append(self, changes: list[Change]) -> None:
        """Add records after the last intact one (cutting off a torn tail first); starts the log if needed."""
        if self.end == 0 or self._inode() != self.inode:
            self.start(self.epoch)
        with open(self.path, "r+b") as handle:
            handle.truncate(self.end)
            handle.seek(self.end)
            handle.write(b"".join(encode(change) for change in changes))
            self.end = handle.tell()

    def start(self, epoch: bytes) -> None:
        """A new empty log continuing the base of `epoch` (after compaction, or for a base without one)."""
        atomic_write(self.path, LOG_MAGIC + epoch)
        self.epoch, self.end, self.inode = epoch, HEADER_BYTES, self._inode()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except FileNotFoundError:
            return None

    def _bytes(self, start: int) -> bytes | None:
        try:
            with open(self.path, "rb") as handle:
                if start == 0:
                    self.inode = os.fstat(handle.fileno()).st_ino
                handle.seek(start)
                return handle.read()
        except OSError:
            return None


def peek_index(base: Path) -> tuple[int, int] | None:
    """(lists of the IVF in a base file or 0 for an exact index, vectors held), None when unknown: read
    from the FAISS header alone, so `status` can say the index type without loading FAISS or the vectors."""
    try:
        with open(base, "rb") as handle:
            head = handle.read(45)
    except OSError:
        return None
    if len(head) < 16 or head[:4] not in (b"IxM2", b"IwSq"):
        return None
    ntotal = struct.unpack_from("<q", head, 8)[0]  # after fourcc and d
    if head[:4] == b"IxM2":
        return 0, ntotal
    if len(head) < 45:
        return None
    return struct.unpack_from("<q", head, 37)[0], ntotal  # after 2 dummies, is_trained and the metric
