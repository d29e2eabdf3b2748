"""What the Redis layer's parts share: redis-py's error types, client types and the Lua scripts.

The scripts run with EVALSHA (``sha_of``) and are loaded on NOSCRIPT, e.g. after a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from hashlib import sha1
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the redis extra is optional: RedisLayer() says how to install it
    from redis import Redis as SyncRedisClient
    from redis.asyncio import Redis as AsyncRedisClient

__all__ = [
    "BUMP_SCRIPT",
    "DELETE_IF_SCRIPT",
    "DELETE_SCRIPT",
    "READ_SCRIPT",
    "REDIS_ERRORS",
    "RELEASE_SCRIPT",
    "WRITE_IF_SCRIPT",
    "AsyncOp",
    "AsyncRedisClient",
    "NoScriptError",
    "SyncOp",
    "SyncRedisClient",
    "sha_of",
]

try:  # resolved once: these are checked on every call
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError

    # RedisClusterException (e.g. slots not covered while a node is down) is not a RedisError.
    REDIS_ERRORS: tuple[type[BaseException], ...] = (
        RedisError,
        RedisClusterException,
        OSError,
        TimeoutError,
    )
except ImportError:  # the redis extra is not installed; RedisLayer() says so when built

    class NoScriptError(Exception):  # type: ignore[no-redef]
        pass

    REDIS_ERRORS = (OSError, TimeoutError)
T = TypeVar("T")
SyncOp = Callable[["SyncRedisClient"], T]
AsyncOp = Callable[["AsyncRedisClient"], Awaitable[T]]

# Fetch entries and the current versions of their tags in one round trip. The tag keys sit in
# clear text after the envelope's fixed header (see entry.py). Only keys under the namespace
# are read, so a forged header cannot make the script read anything else.
READ_SCRIPT = """
local out = {}
local prefix = ARGV[1]
for i, key in ipairs(KEYS) do
  local blob = redis.call('GET', key)
  if not blob then
    out[i] = false
  else
    local n = 0
    if #blob >= 6 and string.sub(blob, 1, 2) == 'CK' then
      n = string.byte(blob, 5) * 256 + string.byte(blob, 6)
    end
    local row = {blob}
    if n > 0 then
      local tagkeys = {}
      for k in string.gmatch(string.sub(blob, 7, 6 + n), '[^\\n]+') do
        if string.sub(k, 1, #prefix) ~= prefix then
          tagkeys = nil
          break
        end
        tagkeys[#tagkeys + 1] = k
      end
      if tagkeys == nil or #tagkeys == 0 then
        row[2] = '!'
      else
        local vers = redis.call('MGET', unpack(tagkeys))
        for j = 1, #tagkeys do row[j + 1] = vers[j] or '0' end
      end
    end
    out[i] = row
  end
end
return out
"""

# Versions move to max(v + 1, now in microseconds): monotonic even if a tag key expired or was
# cleared, so an old entry can never match a recycled version number (no ABA).
BUMP_SCRIPT = """
local now = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local v = tonumber(redis.call('GET', k) or '0') or 0
  redis.call('SET', k, string.format('%d', math.max(v + 1, now)), 'EX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return #KEYS
"""

# Delete an entry and leave a tombstone: a version, as a tag bump makes one (max(v + 1, now in
# microseconds): it only ever grows), kept ARGV[2] ms (at least the lock TTL). A value computed
# from a read made before the delete is then refused by WRITE_IF_SCRIPT. KEYS[2] is the entry's
# tombstone (keys.py: same cluster slot). Returns what DEL returns.
DELETE_SCRIPT = """
local now = tonumber(ARGV[1])
local v = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
redis.call('SET', KEYS[2], string.format('%d', math.max(v + 1, now)), 'PX', ARGV[2])
return redis.call('DEL', KEYS[1])
"""

# Store a value computed after ARGV[3] (microseconds, the clock tag versions use) unless its key
# was deleted after that: its tombstone (KEYS[2]) is newer, or is not a version at all (a
# value we did not write: refuse rather than guess). ARGV[1] is the blob, ARGV[2] the TTL in ms
# ('' for none). 1 stored, 0 refused.
WRITE_IF_SCRIPT = """
local mark = redis.call('GET', KEYS[2])
if mark then
  local v = tonumber(mark)
  if v == nil or v > tonumber(ARGV[3]) then return 0 end
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# Delete a key only if it still holds the given value (used to clear out an invalid entry
# that would make SET NX refuse an add, without racing a concurrent valid write).
DELETE_IF_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Release a lock only if we still own it: a lock that expired and was taken by another
# process must not be deleted by the late first owner.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@cache
def sha_of(script: str) -> str:
    """The SHA1 that EVALSHA names ``script`` by."""
    return sha1(script.encode()).hexdigest()
