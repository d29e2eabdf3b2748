"""``Listener``: one thread per Redis layer subscribed to the namespace's invalidation channel.

It serves sync and async callers alike (a thread, not a task: it must outlive any event loop).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger("cachekit.redis")


class Listener:
    def __init__(
        self,
        new_client: Callable[..., redis.Redis],
        close_client: Callable[[redis.Redis], None],
        socket_timeout: float,
    ) -> None:
        self._new_client = new_client
        self._close_client = close_client
        self._socket_timeout = socket_timeout
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._stop = threading.Event()
        self.listening = False

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(
        self,
        channel: str,
        on_message: Callable[[bytes], None],
        on_connect: Callable[[], None],
        name: str,
    ) -> None:
        """Subscribe in the background. ``on_connect`` runs after every (re)subscription:
        anything published while we were not subscribed is lost, so the caller starts clean."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen, args=(channel, on_message, on_connect), name=name, daemon=True
        )
        self._thread.start()

    def _listen(
        self, channel: str, on_message: Callable[[bytes], None], on_connect: Callable[[], None]
    ) -> None:
        import redis

        backoff = 0.05
        # Health-check PINGs notice a hung or silently dropped connection within seconds;
        # the handshake is bounded like any other call so close() never waits long.
        options: dict[str, Any] = {
            "socket_timeout": max(2.0, self._socket_timeout * 4),
            "health_check_interval": 1,
            "max_connections": None,
        }
        while not self._stop.is_set():
            client = None
            try:
                client = self._new_client(**options)
                self._client = client
                pubsub = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
                pubsub.subscribe(channel)
                confirmed = pubsub.get_message(timeout=self._socket_timeout * 4)
                if not confirmed or confirmed.get("type") != "subscribe":
                    raise redis.ConnectionError("no subscription confirmation")
                on_connect()
                self.listening = True
                backoff = 0.05
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message and message.get("type") == "message":
                        on_message(message["data"])
            except Exception as exc:  # reconnect on any failure; never let the thread die
                if self.listening and not self._stop.is_set():  # closing is not an outage
                    log.warning("cachekit: invalidation listener lost Redis: %s", exc)
                self.listening = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                self.listening = False
                self._client = None
                if client is not None:
                    with contextlib.suppress(Exception):
                        self._close_client(client)

    def stop(self) -> None:
        self._stop.set()
        client = self._client
        if client is not None:  # unblock a pending read at once
            with contextlib.suppress(Exception):
                client.close()
        if self._thread is not None:
            # A daemon thread: if it is stuck connecting to a hung server it exits on its own
            # after the (bounded) handshake; closing the cache need not wait for that.
            self._thread.join(timeout=0.3)
            self._thread = None
