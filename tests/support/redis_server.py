"""Private redis-server processes for tests: start on a free loopback port, stop, freeze
(SIGSTOP), thaw and restart mid-test. Tests never touch the machine's server on 6379.

``RedisServer(tls=ServerTLS(...))`` serves TLS only (``--port 0``): nothing can reach it in
clear text, so whatever talks to it provably speaks TLS."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerTLS:
    """PEM files of a TLS-only server. ``client_cert``/``client_key`` (issued by ``ca_cert``)
    are what the harness itself presents (readiness check, ``cli()``); they are required when
    ``auth_clients`` makes the server demand a client certificate."""

    ca_cert: Path
    cert_file: Path
    key_file: Path
    auth_clients: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        if self.client_cert is not None:
            key = str(self.client_key) if self.client_key is not None else None
            context.load_cert_chain(str(self.client_cert), key)
        return context


class RedisServer:
    """One redis-server child process. ``url`` stays the same across restarts.

    With ``tls``, the server listens on ``tls_port`` only (``port`` is 0): use ``tls_url``.
    """

    def __init__(
        self, port: int | None = None, *extra_args: str, tls: ServerTLS | None = None
    ) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        if tls is not None and tls.auth_clients and tls.client_cert is None:
            raise ValueError("auth_clients needs a client_cert for the readiness check")
        self.tls = tls
        self.tls_port = (port or free_port()) if tls is not None else 0
        self.port = 0 if tls is not None else (port or free_port())
        self.extra_args = extra_args
        listen_port = self.tls_port or self.port
        self.dir = Path(tempfile.mkdtemp(prefix=f"cachekit-redis-{listen_port}-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        assert self.tls is not None, "not a TLS server"
        return f"rediss://127.0.0.1:{self.tls_port}/0"

    def _tls_args(self) -> list[str]:
        tls = self.tls
        if tls is None:
            return []
        return [
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", str(tls.cert_file), "--tls-key-file", str(tls.key_file),
            "--tls-ca-cert-file", str(tls.ca_cert),
            # redis-server demands client certificates unless told otherwise.
            "--tls-auth-clients", "yes" if tls.auth_clients else "no",
        ]  # fmt: skip

    def start(self) -> RedisServer:
        assert self.process is None, "already running"
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            "--daemonize", "no", "--loglevel", "warning", *self._tls_args(), *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        port = self.tls_port or self.port
        context = self.tls.client_context() if self.tls is not None else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited at start")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as raw:
                    sock = raw
                    if context is not None:  # ssl.SSLError is an OSError: retried too
                        sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                    with sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {port} did not answer PING")

    def stop(self) -> None:
        """Kill the server (SIGKILL: an abrupt crash, as in production outages)."""
        if self.process is None:
            return
        if self.frozen:
            self.thaw()
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung server)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def cli(self, *args: str) -> str:
        """Run a command through redis-cli against this server (plain text output)."""
        result = subprocess.run(
            ["redis-cli", *self._cli_connection(), "--no-raw", *args],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def _cli_connection(self) -> list[str]:
        tls = self.tls
        if tls is None:
            return ["-p", str(self.port)]
        args = ["-h", "127.0.0.1", "-p", str(self.tls_port), "--tls", "--cacert", str(tls.ca_cert)]
        if tls.client_cert is not None:
            args += ["--cert", str(tls.client_cert), "--key", str(tls.client_key)]
        return args

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
