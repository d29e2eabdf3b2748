"""Private multi-process Redis topologies for tests: a 3-master Redis Cluster and a
master + replica watched by one Sentinel. Built from RedisServer processes on free loopback
ports, so tests can kill, freeze and restart any node."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from .redis_server import RedisServer, free_port


def _wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (subprocess.SubprocessError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class RedisClusterNodes:
    """Three masters, no replicas: every slot is served, and keys spread over the nodes."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                None,
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "2000"),
                # The default bus port (port + 10000) may be taken or past 65535.
                *("--cluster-port", str(free_port())),
            )
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterNodes:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            _wait(self._ready, "cluster_state:ok on every node")
        except BaseException:
            self.close()  # never leave half a cluster running
            raise
        return self

    def _ready(self) -> bool:
        return all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes)

    def flush(self) -> None:
        for node in self.nodes:
            node.cli("flushall")

    def node_of(self, key: str) -> RedisServer:
        """The master that serves ``key``'s slot."""
        slot = int(self.nodes[0].cli("cluster", "keyslot", key).removeprefix("(integer) "))
        by_port = {node.port: node for node in self.nodes}
        for line in self.nodes[0].cli("cluster", "nodes").strip('"').splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rpartition(":")[2])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return by_port[port]
        raise LookupError(f"no node owns slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class RedisSentinelSet:
    """A master, one replica and one Sentinel (quorum 1) that fails over within seconds."""

    SERVICE = "cachekit-master"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer(None, "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinel_port = free_port()
        self.sentinel_dir = self.master.dir / "sentinel"
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.SERVICE}/0"

    def start(self) -> RedisSentinelSet:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> RedisSentinelSet:
        self.master.start()
        self.replica.start()
        _wait(
            lambda: "master_link_status:up" in self.replica.cli("info", "replication"),
            "the replica to sync",
        )
        self.sentinel_dir.mkdir(parents=True, exist_ok=True)
        conf = self.sentinel_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.sentinel_dir}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        server = shutil.which("redis-server")
        assert server is not None
        self.sentinel = subprocess.Popen(
            [server, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(lambda: self.master_port() == self.master.port, "the sentinel to see the master")
        return self

    def sentinel_cli(self, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.sentinel_port), *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip

    def master_port(self) -> int | None:
        out = self.sentinel_cli("sentinel", "get-master-addr-by-name", self.SERVICE).split()
        return int(out[1]) if len(out) == 2 else None

    def wait_failover(self, timeout: float = 30.0) -> None:
        """Block until the Sentinel has promoted the replica."""
        _wait(lambda: self.master_port() == self.replica.port, "the failover", timeout)
        _wait(
            lambda: "role:master" in self.replica.cli("info", "replication"),
            "the replica to become master",
            timeout,
        )

    def close(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)
            self.sentinel = None
        self.replica.close()
        self.master.close()
        shutil.rmtree(Path(self.sentinel_dir), ignore_errors=True)
