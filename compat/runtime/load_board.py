"""The load board: a small file in the instance directory, mapped by every worker, where each publishes its model load
on every admission change, so each worker can weigh its own against the others' (shared.guards.balance)."""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from drum_compat.shared.guards.admission import AdmissionGate, AdmissionObservers, IgnoreAdmission
from drum_compat.shared.guards.balance import WorkerLoad, hands_back_connection, takes_new_connections

logger = logging.getLogger("drum_compat")
SLOT = struct.Struct("<iii4xd")  # pid, running, waiting, written at (time.monotonic: one clock for every process)
BOARD_FILE = "load-board"
FRESH = 3.0  # seconds: a slot written longer ago is a dead or frozen worker's (a live one stamps it every second)
STAMP_EVERY = 1.0


class LoadBoard(IgnoreAdmission):
    """One worker's view of the board: it writes only its own slot, which it takes once its loop runs (a worker still
    starting takes no connections, so nobody must count on it) and frees when it stops accepting. Replacements overlap
    the workers they replace, so there are two slots per worker; a stale slot is free."""

    def __init__(self, path: str, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pid = os.getpid()
        self.load = (0, 0)
        self.index: int | None = None  # this worker's slot, once it has joined
        self.left = False
        size = 2 * workers * SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)

    @contextmanager
    def _locked(self):
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # explicitly: the mapping holds a duplicate of the file, and the lock

    def _join(self) -> None:
        with self._locked():  # two workers joining together must not take one slot
            now = self.clock()
            for index, (pid, _, _, written) in enumerate(SLOT.iter_unpack(self._map)):
                if pid == 0 or now - written > FRESH:
                    self.index = index
                    self._write()
                    return
        self.left = True
        logger.warning("Worker %d found no free slot on the load board: connections are not spread by its load", self.pid)

    def _write(self) -> None:
        if self.index is not None:
            SLOT.pack_into(self._map, self.index * SLOT.size, self.pid, *self.load, self.clock())

    # -- the gate's observer: this worker's load, on each change (under the gate's lock) --------------
    def admission_changed(self, running: int, waiting: int) -> None:
        self.load = (running, waiting)
        self._write()

    def stamp(self) -> None:
        """Accepting, with this load: called from the worker's own loop, so a frozen loop goes stale. The first joins."""
        if self.index is not None:
            self._write()
        elif not self.left:
            self._join()

    def others(self) -> Iterator[WorkerLoad]:
        """Read as the policy asks: it often decides from this worker's own load alone."""
        now = self.clock()
        return (WorkerLoad(running, waiting) for index, (pid, running, waiting, written) in enumerate(SLOT.iter_unpack(self._map))
                if index != self.index and pid and now - written <= FRESH)

    def leave(self) -> None:
        """The worker stops accepting: nobody must count on it to take connections, nor will it write again."""
        self.left = True
        if self.index is not None:
            SLOT.pack_into(self._map, self.index * SLOT.size, 0, 0, 0, 0.0)
            self.index = None


class Balance:
    """This worker's answers from the policy: its own load from its gate, the others' from the board."""

    def __init__(self, gate: AdmissionGate, board: LoadBoard | None) -> None:
        self.gate = gate
        self.board = board
        self._last_stamp = 0.0
        if board is not None:
            gate.observer = AdmissionObservers(gate.observer, board)
            gate.hands_back = self.hands_back_connection

    def _mine(self) -> WorkerLoad:
        return WorkerLoad(self.gate.running, self.gate.waiting)

    def takes_new_connections(self) -> bool:
        return self.board is None or takes_new_connections(self._mine(), self.gate.limits.threads, self.board.others())

    def hands_back_connection(self, queue_full: bool = False) -> bool:
        return hands_back_connection(self._mine(), self.gate.limits.threads, self.board.others(), queue_full)

    def tick(self) -> None:
        """From the worker's I/O loop, however often: the board hears from it every STAMP_EVERY seconds."""
        if self.board is not None and self.board.clock() - self._last_stamp >= STAMP_EVERY:
            self._last_stamp = self.board.clock()
            self.board.stamp()

    def leave(self) -> None:
        if self.board is not None:
            self.board.leave()


def worker_balance(gate: AdmissionGate, instance_dir: str | None, workers: int) -> Balance:
    """The balance of a worker of this instance; inactive with one worker, or out of the instance (in-process tests)."""
    if workers < 2 or not instance_dir:
        return Balance(gate, None)
    try:
        board = LoadBoard(os.path.join(instance_dir, BOARD_FILE), workers)
    except OSError as error:
        logger.warning("Worker %d serves without the load board (connections are not spread by load): %s", os.getpid(), error)
        return Balance(gate, None)
    return Balance(gate, board)
