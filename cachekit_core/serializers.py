"""Value serializers. Each has a one-byte id stored in the entry header.

Pickle executes code on load, so it is only allowed when a secret key is set: every shared
payload is then HMAC-signed and verified before any byte reaches ``pickle.loads``.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol

import msgpack
import orjson

from .exceptions import ConfigurationError


class Serializer(Protocol):
    id: int
    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class MsgpackSerializer:
    id = 0
    name = "msgpack"

    def dumps(self, value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


class JsonSerializer:
    id = 1
    name = "json"

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class PickleSerializer:
    id = 2
    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # only ever reached after HMAC verification


SERIALIZERS: dict[str, type[Serializer]] = {
    "msgpack": MsgpackSerializer,
    "json": JsonSerializer,
    "pickle": PickleSerializer,
}


def get_serializer(name: str | Serializer, secret_key: bytes | None) -> Serializer:
    """Return the serializer called ``name``; refuse pickle without a secret key."""
    if not isinstance(name, str):
        serializer = name
    else:
        try:
            serializer = SERIALIZERS[name]()
        except KeyError:
            choices = ", ".join(SERIALIZERS)
            raise ConfigurationError(f"serializer={name!r}: choose one of {choices}") from None
    if serializer.id == PickleSerializer.id and not secret_key:
        raise ConfigurationError(
            "serializer='pickle' needs secret_key=...: unsigned pickles in a shared cache "
            "let anyone who can write to Redis run code in your process"
        )
    return serializer
