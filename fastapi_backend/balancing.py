"""Connection spreading on uvicorn (shared.guards.balance): uvloop cannot stop listening, so a worker's servers are
closed while the policy leaves new connections to a worker with room, and reopened on duplicates of the listening socket."""
from __future__ import annotations

import asyncio
import os
import socket
from functools import partial

from drum_compat.compat.load_board import Balance
from drum_compat.fastapi_backend.recycling import Retirement, running_uvicorn_server
from drum_compat.shared.guards.balance import ACCEPT_PAUSE


async def keep_balance(balance: Balance, retirement: Retirement) -> None:
    """The worker's balancing loop, from its lifespan until cancelled: stamps the board, pauses and resumes accepting."""
    server = running_uvicorn_server()
    if server is None or balance.board is None:
        return
    while not getattr(server, "servers", None):  # uvicorn opens them once the lifespan has started
        await asyncio.sleep(ACCEPT_PAUSE)
    spares = [socket.socket(fileno=os.dup(listening.sockets[0].fileno())) for listening in server.servers]
    config = server.config
    protocol = partial(config.http_protocol_class, config=config, server_state=server.server_state, app_state=server.lifespan.state)
    loop = asyncio.get_running_loop()
    paused = False
    try:
        while not (server.should_exit or retirement.begun):
            balance.tick()
            takes = balance.takes_new_connections()
            if paused and takes:
                server.servers[:] = [await loop.create_server(protocol, sock=spare.dup(), ssl=config.ssl, backlog=config.backlog)
                                     for spare in spares]
                paused = False
                if server.should_exit or retirement.begun:  # began while the servers reopened: they stay shut
                    for listening in server.servers:
                        listening.close()
            elif not paused and not takes:
                for listening in server.servers:
                    listening.close()
                paused = True
            await asyncio.sleep(ACCEPT_PAUSE)
    finally:
        for spare in spares:
            spare.close()
