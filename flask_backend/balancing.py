"""Connection spreading on gunicorn (shared.guards.balance): the gevent worker's server and the gthread worker's poller
stop accepting while the policy leaves new connections to a worker with room, and gunicorn's heartbeat stamps the board."""
from __future__ import annotations

from drum_compat.compat.load_board import Balance
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
    enable_accept = getattr(worker, "set_accept_enabled", None)
    if enable_accept is None:  # an older gunicorn's gthread worker cannot stop accepting: spread by hand-backs only
        return

    def set_accept_enabled(enabled: bool) -> None:
        # the loop turns on every finished request and at least once a second; each turn asks again
        enable_accept(enabled and balance.takes_new_connections())

    def notify_and_weigh() -> None:
        notify()
        if worker._accepting and not balance.takes_new_connections():
            enable_accept(False)

    worker.set_accept_enabled = set_accept_enabled
    worker.notify = notify_and_weigh
