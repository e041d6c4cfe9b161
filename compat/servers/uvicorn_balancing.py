"""Connection spreading on uvicorn (shared.guards.balance): uvloop cannot stop listening, so a worker's servers are
closed while the policy leaves new connections to a worker with room, and reopened on duplicates of the listening socket;
with DRUM_QUEUE_IN_BACKLOG the worker accepts its connections itself, one at a time while it has room."""
from __future__ import annotations

import asyncio
import os
import socket
from functools import partial

from uvicorn.server import Server

from drum_compat.runtime.load_board import Balance
from drum_compat.shared.guards.balance import ACCEPT_PAUSE, has_room_for_connection
from drum_compat.shared.guards.retirement import Retirement


async def keep_balance(server: Server | None, balance: Balance, retirement: Retirement) -> None:
    """The worker's balancing loop, from its lifespan until cancelled: stamps the board, pauses and resumes accepting."""
    if server is None:
        return
    config = server.config
    protocol = partial(config.http_protocol_class, config=config, server_state=server.server_state, app_state=server.lifespan.state)
    if getattr(server, "listening", None):  # DRUM_QUEUE_IN_BACKLOG (servers.uvicorn_master.BacklogServer)
        await accept_with_room(server, protocol, server.listening, balance, retirement)
        return
    if balance.board is None:
        return
    while not getattr(server, "servers", None):  # uvicorn opens them once the lifespan has started
        await asyncio.sleep(ACCEPT_PAUSE)
    spares = [socket.socket(fileno=os.dup(listening.sockets[0].fileno())) for listening in server.servers]
    try:
        await pause_while_others_have_room(server, protocol, spares, balance, retirement)
    finally:
        for spare in spares:
            spare.close()


async def pause_while_others_have_room(server, protocol, spares, balance: Balance, retirement: Retirement) -> None:
    config = server.config
    loop = asyncio.get_running_loop()
    paused = False
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


async def accept_with_room(server, protocol, listeners, balance: Balance, retirement: Retirement) -> None:
    """DRUM_QUEUE_IN_BACKLOG: uvloop's servers accept every connection waiting at once, so the worker accepts from the
    listening sockets itself, one connection per turn of its loop while it holds fewer than its model threads."""
    loop = asyncio.get_running_loop()
    threads = balance.gate.limits.threads
    held = len(server.server_state.connections)  # from accept to connection_lost (uvicorn counts from connection_made)
    room_changed = asyncio.Event()

    def accepting() -> bool:
        return not (server.should_exit or retirement.begun) and has_room_for_connection(held, threads)

    def closed() -> None:
        nonlocal held
        held -= 1
        room_changed.set()

    def opened(task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:  # a client that reset before its transport was made
            closed()

    def accept(listener: socket.socket) -> None:
        nonlocal held
        if not accepting():
            room_changed.set()  # the loop below stops watching
            return
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        held += 1
        loop.create_task(loop.connect_accepted_socket(protocol, connection, ssl=server.config.ssl)).add_done_callback(opened)

    server.config.connection_closed = closed
    watching = False
    try:
        while not (server.should_exit or retirement.begun):
            balance.tick()
            room_changed.clear()
            if accepting() != watching:
                watching = not watching
                for listener in listeners:
                    if watching:
                        loop.add_reader(listener.fileno(), accept, listener)
                    else:
                        loop.remove_reader(listener.fileno())
            try:
                await asyncio.wait_for(room_changed.wait(), ACCEPT_PAUSE)
            except asyncio.TimeoutError:
                pass
    finally:
        server.config.connection_closed = None
        if watching:
            for listener in listeners:
                loop.remove_reader(listener.fileno())
