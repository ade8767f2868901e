"""A real redis-server on a free 127.0.0.1 port for the integration tests, and a tiny RESP2
client to read and write its keys.

    srv = start_redis(password=None)          # no persistence, killed at exit
    srv.set("proxy:sandbox-public:ID", '{"value":true}', ex=3600)
    srv.get("proxy:sandbox-public:ID")        # str or None
    srv.pause(); srv.resume()                 # SIGSTOP / SIGCONT: a hung server
    srv.kill(); srv.restart()                 # gone, then back on the same port (empty)
"""
import os
import shutil
import signal
import socket
import tempfile

from stack import free_port, start_process, wait_until

START_TIMEOUT = 10.0


class RedisError(Exception):
    """An error reply (-ERR ..., -WRONGPASS ...)."""


class RespConnection:
    """One blocking RESP2 connection; command() sends an array of bulk strings and returns the
    reply (str, int, list, None, or raises RedisError)."""

    def __init__(self, port, password=None, username=None, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password is not None:
            self.command("AUTH", *([username] if username else []), password)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:].decode("utf-8", "replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP reply {line[:80]!r}")


class RedisServer:
    def __init__(self, port, password=None, log_dir=None, name="redis", procs=None):
        self.port = port
        self.procs = procs  # each started Proc is appended (e.g. a DevStack's, for its logs)
        self.password = password
        self.name = name
        self.own_dir = log_dir is None
        self.dir = log_dir or tempfile.mkdtemp(prefix="edgegate-redis-")
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=START_TIMEOUT):
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir,
               "--protected-mode", "no", "--loglevel", "notice"]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        self.starts += 1
        name = self.name if self.starts == 1 else f"{self.name}-{self.starts}"
        self.proc = start_process(cmd, name=name, log_dir=self.dir, wait_listening=False)
        if self.procs is not None:
            self.procs.append(self.proc)

        def answers():
            if not self.proc.alive():
                raise RuntimeError(f"redis-server exited\n{self.proc.describe()}")
            try:
                return self.command("PING", timeout=0.5) == "PONG"
            except (OSError, RedisError):
                return False

        try:
            wait_until(answers, timeout, f"redis-server on port {self.port} to answer PING")
        except TimeoutError as e:
            self.proc.kill()
            raise RuntimeError(f"{e}\n{self.proc.describe()}") from None
        return self

    def connect(self, timeout=2.0):
        return RespConnection(self.port, self.password, timeout=timeout)

    def command(self, *args, timeout=2.0):
        with self.connect(timeout) as c:
            return c.command(*args)

    # keys
    def get(self, key):
        return self.command("GET", key)

    def set(self, key, value, ex=None):
        return self.command("SET", key, value, *(["EX", ex] if ex else []))

    def delete(self, key):
        return self.command("DEL", key)

    def ttl(self, key):
        return self.command("TTL", key)

    # faults
    def pause(self):
        """SIGSTOP: the port still accepts connections, nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.paused and self.proc is not None and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self):
        self.resume()
        if self.proc is not None:
            self.proc.kill()

    def restart(self, timeout=START_TIMEOUT):
        """Kills the server and starts a new one on the same port (with no data)."""
        self.kill()
        return self.start(timeout)

    def stop(self):
        self.resume()
        if self.proc is not None:
            self.proc.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self, since=(0, 0)):
        return self.proc.describe(since) if self.proc else f"----- {self.name}: not started\n"


def start_redis(password=None, port=None, log_dir=None, name="redis", procs=None,
                timeout=START_TIMEOUT):
    """A redis-server on 127.0.0.1:`port` (default: a free port), no RDB or AOF, optionally with
    --requirepass; returns once it answers PING. Killed when the test process exits. With
    `log_dir`, its log goes there (and the directory is not removed by stop()); `procs` gets
    every started process appended (pass a DevStack's `procs` to have its log printed with
    theirs)."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("the Redis integration tests need redis-server on PATH")
    return RedisServer(port or free_port(), password, log_dir, name, procs).start(timeout)


def wait_for_key(srv, key, predicate=lambda v: v is not None, timeout=5.0, what=None):
    """Polls GET key until predicate(value); returns the value."""
    last = []

    def check():
        v = srv.get(key)
        last[:] = [v]
        return (v,) if predicate(v) else None

    try:
        return wait_until(check, timeout, what or f"redis key {key}", interval=0.02)[0]
    except TimeoutError as e:
        raise AssertionError(f"{e}; last value {last[0] if last else None!r}") from None
