"""A loopback TCP relay that counts client/server round trips, whatever the wire protocol.

A round trip is counted each time the client sends after the server has answered: pipelined
messages (Parse/Bind/Execute/Sync in one write) count once, as they cost one network wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass
class Conversation:
    round_trips: int = 0
    server_spoke: bool = True


@dataclass
class Relay:
    """Listen on 127.0.0.1:port, forward to target_port; `round_trips` sums all connections."""

    target_port: int
    port: int = 0
    conversations: list[Conversation] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self.conversations)

    def reset(self) -> None:
        self.conversations.clear()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        talk: Conversation,
        from_client: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if from_client and talk.server_spoke:
                    talk.round_trips += 1
                    talk.server_spoke = False
                elif not from_client:
                    talk.server_spoke = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        talk = Conversation()
        self.conversations.append(talk)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, talk, from_client=True),
            self._pipe(server_reader, client_writer, talk, from_client=False),
        )

    def start(self) -> Relay:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="relay", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
