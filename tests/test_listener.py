"""The launcher's listening socket, in-process: IPv4 and bracketed IPv6 addresses, inherited across exec,
and one message for an address in use."""
from __future__ import annotations

import socket

import pytest

from drum_compat.runtime.listener import AddressUnavailable, bind_listener


@pytest.mark.parametrize("host,family", [("127.0.0.1", socket.AF_INET), ("[::1]", socket.AF_INET6), ("::1", socket.AF_INET6)])
def test_binds_ipv4_and_ipv6_and_is_inherited(host, family):
    with bind_listener(host, 0, 16) as listener:
        assert listener.family == family and listener.get_inheritable()
        with socket.create_connection((host.strip("[]"), listener.getsockname()[1]), timeout=5):
            pass  # accepted into the backlog


def test_an_address_in_use_names_it():
    with bind_listener("127.0.0.1", 0, 16) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(AddressUnavailable, match=f"^cannot listen on 127.0.0.1:{port}: Address already in use$"):
            bind_listener("127.0.0.1", port, 16)
