"""A loopback TCP relay in a thread, whatever the wire protocol: it counts client/server round
trips (for the benchmarks) and can be switched silent (for the fault tests).

A round trip is counted each time the client sends after the server has answered: pipelined
messages (Parse/Bind/Execute/Sync in one write) count once, as they cost one network wait.
`silent` accepts connections and never answers (and stops relaying on open ones): a database
that listens but is hung, or a black-holed network path.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import Literal

Mode = Literal["forward", "silent"]


@dataclass
class Conversation:
    round_trips: int = 0
    server_spoke: bool = True


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target_port, or a silent listener when `mode` is silent (or
    there is no target)."""

    def __init__(self, target_port: int | None, mode: Mode = "forward") -> None:
        self.target_port = target_port
        self.mode: Mode = mode
        self.port = 0
        self.conversations: list[Conversation] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def round_trips(self) -> int:
        """Round trips over every connection since the start or the last `reset()`."""
        return sum(c.round_trips for c in self.conversations)

    def reset(self) -> None:
        self.conversations.clear()

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        talk: Conversation,
        *,
        from_client: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "silent":
                    continue  # swallow: the other side waits forever
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.mode == "silent" or self.target_port is None:
                await reader.read()  # hold the connection open until the client gives up
                return
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(upstream_writer)
            talk = Conversation()
            self.conversations.append(talk)
            await asyncio.gather(
                self._pipe(reader, upstream_writer, talk, from_client=True),
                self._pipe(upstream_reader, writer, talk, from_client=False),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def start(self) -> Relay:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            for writer in self._writers:
                writer.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=serve, name="relay", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("relay did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
