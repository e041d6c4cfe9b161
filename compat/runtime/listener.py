"""The listening socket, bound by the launcher before anything else starts: an address that cannot be used
stops every server type with the same message and status, and the servers inherit the socket."""
from __future__ import annotations

import socket

ADDRESS_UNAVAILABLE = 1  # exit status, as gunicorn's and DRUM's for an address in use


class AddressUnavailable(OSError):
    pass


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening, inheritable TCP socket (IPv4 or IPv6, as the host resolves; `[::1]` as gunicorn takes it)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise AddressUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and uvicorn do
        listener.bind(address)
        listener.listen(backlog)
    except OSError as exc:
        listener.close()
        raise AddressUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener
