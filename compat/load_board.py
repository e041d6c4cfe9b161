"""The load board: a small file in the instance directory, mapped by every worker, where each publishes its model load
on every admission change, so each worker can weigh its own against the others' (shared.guards.balance)."""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import time
from typing import Callable

from drum_compat.shared.guards.admission import AdmissionGate, AdmissionObservers
from drum_compat.shared.guards.balance import WorkerLoad, hands_back_connection, takes_new_connections

logger = logging.getLogger("drum_compat")
SLOT = struct.Struct("<iii4xd")  # pid, running, waiting, written at (time.monotonic: one clock for every process)
BOARD_FILE = "load-board"
FRESH = 3.0  # seconds: a slot written longer ago is a dead or frozen worker's (a live one stamps it every second)
STAMP_EVERY = 1.0


class LoadBoard:
    """One worker's view of the board: it writes only its own slot; replacements overlap the workers they replace,
    so there are two slots per worker, and a stale slot is free."""

    def __init__(self, path: str, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.slots = 2 * workers
        self.pid = os.getpid()
        self.load = (0, 0)
        size = self.slots * SLOT.size
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two workers starting together must not claim one slot
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
            self.index = self._free_slot()
            if self.index is not None:
                self._write()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: the mapping holds a duplicate of fd, which would keep the lock
            os.close(fd)

    def _free_slot(self) -> int | None:
        now = self.clock()
        for index, (pid, _, _, written) in enumerate(SLOT.iter_unpack(self._map)):
            if pid == 0 or now - written > FRESH:
                return index
        return None

    def _write(self) -> None:
        SLOT.pack_into(self._map, self.index * SLOT.size, self.pid, *self.load, self.clock())

    # -- the gate's observer: this worker's load, on each change (under the gate's lock) --------------
    def admission_changed(self, running: int, waiting: int) -> None:
        self.load = (running, waiting)
        self._write()

    def rejected(self, reason: str) -> None:
        pass

    def model_ran(self, seconds: float) -> None:
        pass

    def stamp(self) -> None:
        """Still alive, with the same load: called from the worker's own loop, so a frozen loop goes stale."""
        self._write()

    def others(self) -> list[WorkerLoad]:
        now = self.clock()
        return [WorkerLoad(running, waiting) for index, (pid, running, waiting, written) in enumerate(SLOT.iter_unpack(self._map))
                if index != self.index and pid and now - written <= FRESH]

    def leave(self) -> None:
        """A retiring worker stops accepting: nobody must count on it to take connections."""
        SLOT.pack_into(self._map, self.index * SLOT.size, 0, 0, 0, 0.0)


class Balance:
    """This worker's answers from the policy: its own load from its gate, the others' from the board."""

    def __init__(self, gate: AdmissionGate, board: LoadBoard | None) -> None:
        self.gate = gate
        self.board = board
        self._last_stamp = 0.0
        if board is not None:
            gate.observer = AdmissionObservers(gate.observer, board)

    def _mine(self) -> WorkerLoad:
        return WorkerLoad(self.gate.running, self.gate.waiting)

    def takes_new_connections(self) -> bool:
        if self.board is None:
            return True
        return takes_new_connections(self._mine(), self.gate.limits.threads, self.board.others())

    def hands_back_connection(self) -> bool:
        gate = self.gate
        if self.board is None or gate.running + gate.waiting < gate.limits.threads:
            return False
        return hands_back_connection(self._mine(), self.gate.limits.threads, self.board.others())

    def tick(self) -> None:
        """From the worker's I/O loop, however often: the board hears from it every STAMP_EVERY seconds."""
        if self.board is not None and self.board.clock() - self._last_stamp >= STAMP_EVERY:
            self._last_stamp = self.board.clock()
            self.board.stamp()

    def leave(self) -> None:
        if self.board is not None:
            self.board.leave()
            self.board = None


def worker_balance(gate: AdmissionGate, instance_dir: str | None, workers: int) -> Balance:
    """The balance of a worker of this instance; inactive with one worker, or out of the instance (in-process tests)."""
    if workers < 2 or not instance_dir:
        return Balance(gate, None)
    try:
        board = LoadBoard(os.path.join(instance_dir, BOARD_FILE), workers)
    except OSError as error:
        logger.warning("Worker %d serves without the load board (connections are not spread by load): %s", os.getpid(), error)
        return Balance(gate, None)
    if board.index is None:
        logger.warning("Worker %d found no free slot on the load board: connections are not spread by its load", os.getpid())
        return Balance(gate, None)
    return Balance(gate, board)
