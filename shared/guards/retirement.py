"""A worker's retirement, decided once for both stacks: after its request budget or at the watchdog's word, and from
then on every answer closes its connection (the core stamps it). The backend only drains its server and exits."""
from __future__ import annotations

import logging
import os
import random
from typing import Callable

logger = logging.getLogger("drum_compat")


class Retirement:
    """`begin` is safe from any thread (the watchdog's included): what it sets is one attribute, and each action
    registered with `on_begin` runs once, where `begin` is called."""

    def __init__(self) -> None:
        self.budget = 0  # requests until retirement; 0: none (gunicorn counts its own max_requests)
        self.requests = 0  # this worker's requests, counted as they arrive
        self.why: str | None = None
        self._on_begin: list[Callable[[str], None]] = []

    def after_requests(self, requests: int, jitter: int = 0) -> None:
        """Retire after `requests` plus 0..`jitter` (DRUM_UVICORN_MAX_REQUESTS and its jitter); 0: never."""
        self.budget = requests + random.randint(0, jitter) if requests else 0

    def on_begin(self, action: Callable[[str], None]) -> None:
        self._on_begin.append(action)

    @property
    def begun(self) -> bool:
        return self.why is not None

    def admit(self) -> None:
        """A request arrived; the one that spends the budget begins the retirement, and its answer already closes."""
        self.requests += 1
        if self.requests == self.budget:
            self.begin(f"after {self.budget} requests")

    def begin(self, why: str) -> None:
        if self.why is not None:
            return
        self.why = why
        logger.warning("Worker %d recycled: %s", os.getpid(), why)
        for action in self._on_begin:
            try:
                action(why)
            except Exception:  # the others (leaving the board, the exit) must still run
                logger.exception("Retirement step %r failed", action)
