"""Connection spreading on gunicorn (shared.guards.balance): the gevent worker's server and the gthread worker's poller
stop accepting (25 ms at a time) while the policy leaves new connections to a worker with room, and gunicorn's heartbeat
stamps the board."""
from __future__ import annotations

import threading
import time

from drum_compat.runtime.load_board import Balance
from drum_compat.shared.guards.balance import ACCEPT_PAUSE


def balanced_stream_server(balance: Balance):
    """gevent's StreamServer, asking the policy before each accept; a pause is gevent's own accept timer."""
    from gevent.server import StreamServer

    class BalancedStreamServer(StreamServer):
        def do_read(self):
            if balance.takes_new_connections():
                return super().do_read()
            self.stop_accepting()
            self._timer = self.loop.timer(ACCEPT_PAUSE)
            self._timer.start(self._start_accepting_if_started)
            return None

    return BalancedStreamServer


def balance_gunicorn_worker(worker, balance: Balance) -> None:
    """Called in post_worker_init, before the worker's loop starts."""
    beat = worker.notify

    def notify() -> None:
        beat()
        balance.tick()

    worker.notify = notify
    if worker.cfg.worker_class_str == "gevent":
        from gunicorn.workers import ggevent

        ggevent.StreamServer = balanced_stream_server(balance)  # the worker's run() builds its servers from this name
        return
    enable_accept = worker.set_accept_enabled
    look_again = threading.Event()

    def wake_the_paused_loop() -> None:
        # a paused loop looks again on its next turn, which without a wake could be a second away
        while True:
            look_again.wait()
            look_again.clear()
            time.sleep(ACCEPT_PAUSE)
            worker.method_queue.defer(lambda: None)

    def accept_if_taking(enabled: bool) -> None:
        taking = enabled and balance.takes_new_connections()
        enable_accept(taking)
        if enabled and not taking:
            look_again.set()

    def set_accept_enabled(enabled: bool) -> None:
        # each turn of the loop while paused asks again; never once the worker is stopping (its SIGTERM handler took
        # the listeners off the poller)
        accept_if_taking(enabled and worker.alive)

    def notify_and_weigh() -> None:
        notify()
        if worker._accepting:
            accept_if_taking(True)

    threading.Thread(target=wake_the_paused_loop, daemon=True, name="drum-compat-accept-wake").start()
    worker.set_accept_enabled = set_accept_enabled
    worker.notify = notify_and_weigh
