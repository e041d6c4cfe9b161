"""A request sent as raw bytes on a connection of its own, and the server's answer read back with h11: how the parity
runner and the tests send what no HTTP client would (malformed heads, repeated fields, broken chunks)."""
from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import h11

READ = 65536


class NoAnswer(Exception):
    """The server closed the connection, or sent what is no HTTP answer."""


def exchange(base_url: str, method: str, data: bytes, timeout: float) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send `data` to the server at `base_url` (over TLS for https, verified as httpx verifies) and read one whole
    answer: its status, headers (names lower-cased) and body. `method` is the request's, which h11 needs to know
    whether a body follows."""
    address = urlsplit(base_url)
    reader = h11.Connection(h11.CLIENT)
    # h11 reads an answer only to a request it sent: this one stands in for `data`, and its bytes are never sent
    reader.send(h11.Request(method=method, target="/", headers=[("Host", address.hostname)]))
    reader.send(h11.EndOfMessage())
    secure = address.scheme == "https"
    connection = socket.create_connection((address.hostname, address.port or (443 if secure else 80)), timeout=timeout)
    if secure:
        connection = ssl.create_default_context().wrap_socket(connection, server_hostname=address.hostname)
    with connection:
        try:
            connection.sendall(data)
            # nothing more comes: a server that reads a body until the connection ends (a coding it does not frame)
            # answers now, not at its timeout
            connection.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send: its answer may still be there
        status, headers, body = 0, [], b""
        while True:
            try:
                event = reader.next_event()
            except h11.RemoteProtocolError as error:
                raise NoAnswer(str(error)) from None
            if event is h11.NEED_DATA:
                try:
                    reader.receive_data(connection.recv(READ))
                except ConnectionResetError:
                    reader.receive_data(b"")
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, headers, body
