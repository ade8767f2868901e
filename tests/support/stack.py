"""Starting the dev stack (control plane, runner stand-in, echo app) and edgegate, for the
integration tests, the demo and the benchmarks.

    with DevStack() as st:                      # fixtures/test.json by default
        eg = st.start_edgegate({"LOG_LEVEL": "debug"})
        host = st.preview_host("public")        # "{echo port}-{sandbox id}.proxy.localhost"

Every process runs with its stdout and stderr in files under a temporary directory, dies with
the process that started it (PR_SET_PDEATHSIG, so start stacks from the main thread) and is
killed at exit. StackTestCase prints what the processes logged during a test that failed.
"""
import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import client  # noqa: E402
import fixture as fixture_mod  # noqa: E402

PYTHON = sys.executable or "python3"
DEFAULT_FIXTURE = os.path.join(HERE, "fixtures", "test.json")
START_TIMEOUT = 20.0
LISTENING_RX = re.compile(rb"^listening on ([0-9.]+):([0-9]+)\s*$")

# Variables edgegate reads: never inherited from the caller's environment into a test.
EDGEGATE_KEYS = (
    "BIND_ADDRESS", "PROXY_PORT", "PROXY_PROTOCOL", "PROXY_API_KEY", "PROXY_API_KEY_FILE",
    "DAYTONA_API_URL", "API_URL", "API_CLIENT_TIMEOUT_SEC", "AUTH_LOOKUP_TIMEOUT_MS",
    "AUTH_CACHE_MAX_ENTRIES", "ENABLE_TLS", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_SNI_CERTS", "RUNNER_CA_FILE",
    "COOKIE_DOMAIN",
    "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_DOMAIN", "OIDC_PUBLIC_DOMAIN", "OIDC_AUDIENCE",
    "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_TLS",
    "REDIS_TIMEOUT_MS", "ROUTE_LOOKUP_TIMEOUT_MS", "ROUTE_STALE_MAX_SEC",
    "ROUTE_CACHE_MAX_ENTRIES", "ROUTE_CACHE_MAX_MB",
    "TOOLBOX_ONLY_MODE", "PREVIEW_WARNING_ENABLED", "SHUTDOWN_TIMEOUT_SEC", "METRICS_PORT",
    "SSH_GATEWAY_PORT", "API_KEY", "SSH_GATEWAY_API_KEY", "SSH_GATEWAY_API_KEY_FILE",
    "SSH_PRIVATE_KEY", "SSH_PRIVATE_KEY_FILE", "SSH_HOST_KEY", "SSH_HOST_KEY_FILE",
    "RUNNER_SSH_PORT", "SSH_KNOWN_HOSTS_FILE", "SSH_RUNNER_HOST_KEY_CHECK",
    "SSH_LOGIN_GRACE_SEC", "SSH_MAX_UNAUTHENTICATED", "SSH_TOKEN_CACHE_SEC",
    "EDGEGATE_WORKERS", "UPSTREAM_CONNECT_TIMEOUT_SEC", "UPSTREAM_RESPONSE_TIMEOUT_SEC",
    "LOG_LEVEL", "LOG_FORMAT",
)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout, what, interval=0.05):
    """Polls condition() until it returns a true value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def edgegate_bin():
    path = os.environ.get("EDGEGATE_BIN") or os.path.join(REPO, "build", "edgegate")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no edgegate binary at {path}: build it (cmake --build build) "
                           "or set EDGEGATE_BIN")
    return path


def clean_env(extra=None):
    """os.environ without edgegate's variables, then `extra` (a value of None removes a key)."""
    env = {k: v for k, v in os.environ.items() if k not in EDGEGATE_KEYS}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# --- processes ------------------------------------------------------------------------------
_live = []
_libc = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    pass


def _die_with_parent():
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@atexit.register
def _kill_all():
    for p in list(_live):
        p.kill()


class Proc:
    """A started process; `port` is what it announced (or was given)."""

    def __init__(self, name, popen, stdout_path, stderr_path, port=None):
        self.name = name
        self.popen = popen
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.port = port
        self.reader = None

    @property
    def pid(self):
        return self.popen.pid

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._done()
        return self.popen.returncode

    def kill(self):
        if self.alive():
            self.popen.kill()
            self.popen.wait()
        self._done()

    def _done(self):
        if self.reader is not None:
            self.reader.join(5)
        if self in _live:
            _live.remove(self)
        self._archive()

    def _archive(self):
        """With EDGEGATE_LOG_ARCHIVE set (scripts/test.sh), keeps a copy of edgegate's output
        there for the suite-wide secret grep (tests/support/secret_grep.py)."""
        archive = os.environ.get("EDGEGATE_LOG_ARCHIVE")
        if not archive or not self.name.startswith("edgegate") or getattr(self, "_archived", 0):
            return
        self._archived = 1
        with contextlib.suppress(OSError):
            os.makedirs(archive, exist_ok=True)
            dest = os.path.join(archive, f"{os.getpid()}-{self.pid}-{self.name}.log")
            with open(dest, "wb") as out:
                for path in (self.stdout_path, self.stderr_path):
                    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                        shutil.copyfileobj(f, out)

    def mark(self):
        return tuple(_size(p) for p in (self.stdout_path, self.stderr_path))

    def output(self, since=(0, 0)):
        """stdout then stderr, from the offsets of a mark()."""
        parts = []
        for path, offset in zip((self.stdout_path, self.stderr_path), since):
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                f.seek(offset)
                parts.append(f.read().decode("utf-8", "replace"))
        return "".join(parts)

    def describe(self, since=(0, 0), max_chars=20000):
        text = self.output(since)
        if len(text) > max_chars:
            text = "...\n" + text[-max_chars:]
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        return (f"----- {self.name} (pid {self.pid}, {state}; {self.stdout_path}, "
                f"{self.stderr_path}) -----\n{text}")


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def start_process(cmd, env=None, name=None, log_dir=None, timeout=START_TIMEOUT,
                  wait_listening=True):
    """Starts `cmd` with stdout and stderr in files under log_dir. With wait_listening, waits
    (up to `timeout`) for its `listening on HOST:PORT` line and sets proc.port."""
    name = name or os.path.basename(cmd[1] if cmd[0] == PYTHON and len(cmd) > 1 else cmd[0])
    log_dir = log_dir or tempfile.mkdtemp(prefix="edgegate-proc-")
    base = os.path.join(log_dir, name)
    stdout_path, stderr_path = base + ".stdout", base + ".stderr"
    with open(stderr_path, "wb") as err, \
            open(os.devnull if wait_listening else stdout_path, "wb") as out:
        popen = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stderr=err,
            stdout=subprocess.PIPE if wait_listening else out,
            preexec_fn=_die_with_parent, close_fds=True)
    proc = Proc(name, popen, stdout_path, stderr_path)
    _live.append(proc)
    if not wait_listening:
        return proc

    announced = threading.Event()

    def read_stdout():
        # Copies stdout to its file (so the pipe never fills) and spots the announcement.
        with open(stdout_path, "wb") as out, popen.stdout:
            for line in popen.stdout:
                out.write(line)
                out.flush()
                m = LISTENING_RX.match(line)
                if m and proc.port is None:
                    proc.port = int(m.group(2))
                    announced.set()
        announced.set()  # EOF: the process is gone

    proc.reader = threading.Thread(target=read_stdout, name=f"{name}-stdout", daemon=True)
    proc.reader.start()
    if not announced.wait(timeout) or proc.port is None:
        proc.kill()
        raise RuntimeError(f"{name} did not print 'listening on' within {timeout:.0f}s\n"
                           + proc.describe())
    return proc


# --- the stack ------------------------------------------------------------------------------
class DevStack:
    """Echo app + runner stand-in (serving `runner_id`'s sandboxes) + dev control plane whose
    fixture points `runner_id` at the stand-in. `runner_urls` overrides other runners' URLs."""

    def __init__(self, fixture_path=DEFAULT_FIXTURE, runner_id="runner-1", runner_urls=None,
                 quiet=False):
        self.fixture_path = os.path.abspath(fixture_path)
        self.runner_id = runner_id
        self.extra_runner_urls = dict(runner_urls or {})
        self.quiet = quiet
        self.procs = []
        self.edgegates = []
        self.tmp = None
        self.keep_logs = False
        self.fixture = None

    # lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.keep_logs = True
            sys.stderr.write(self.describe())
        self.stop()

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="edgegate-stack-")
        quiet = ["--quiet"] if self.quiet else []
        try:
            self.app = self._start([PYTHON, os.path.join(HERE, "echo_app.py"), "--port", "0",
                                    *quiet], "echo-app")
            self.runner = self._start(
                [PYTHON, os.path.join(HERE, "runner_standin.py"), "--port", "0", "--fixture",
                 self.fixture_path, "--runner-id", self.runner_id, *quiet], "runner")
            urls = dict(self.extra_runner_urls, **{self.runner_id: self.runner.url})
            self.fixture = fixture_mod.load(self.fixture_path, urls)
            cmd = [PYTHON, os.path.join(HERE, "dev_control_plane.py"), "--fixture",
                   self.fixture_path, "--port", "0", *quiet]
            for rid, url in urls.items():
                cmd += ["--runner-url", f"{rid}={url}"]
            self.cp = self._start(cmd, "control-plane")
        except BaseException:
            self.keep_logs = True
            self.stop()
            raise
        return self

    def _start(self, cmd, name, env=None, **kw):
        proc = start_process(cmd, env=env or clean_env(), name=name, log_dir=self.tmp, **kw)
        self.procs.append(proc)
        return proc

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        if self.tmp and not self.keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp:
            sys.stderr.write(f"[stack] logs kept in {self.tmp}\n")

    def mark(self):
        return {p: p.mark() for p in self.procs}

    def describe(self, marks=None):
        return "\n".join(p.describe(marks.get(p, (0, 0)) if marks else (0, 0))
                         for p in self.procs) + "\n"

    # fixture
    @property
    def proxy_api_key(self):
        return self.fixture["proxyApiKey"]

    @property
    def runner_api_key(self):
        return next(r["apiKey"] for r in self.fixture["runners"] if r["id"] == self.runner_id)

    @property
    def api_url(self):
        return f"{self.cp.url}/api"

    @property
    def app_port(self):
        return self.app.port

    def sandbox(self, name_or_id):
        for s in self.fixture["sandboxes"]:
            if name_or_id in (s["id"], s.get("name")):
                return s
        raise KeyError(f"no sandbox {name_or_id!r} in {self.fixture_path}")

    def sandbox_id(self, name_or_id):
        return self.sandbox(name_or_id)["id"]

    def preview_host(self, name_or_id, port=None, domain="proxy.localhost"):
        """`{port}-{sandboxId}.{domain}`; port defaults to the echo app's."""
        return f"{port or self.app_port}-{self.sandbox_id(name_or_id)}.{domain}"

    # controls
    def _json(self, proc, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{proc.name} {method} {path}: {resp.status} {raw[:500]!r}")
            return json.loads(raw) if raw else None
        finally:
            conn.close()

    def cp_fail(self, mode, delay_ms=0, count=None, path_prefix=None):
        rule = {"mode": str(mode), "delayMs": delay_ms}
        if count is not None:
            rule["count"] = count
        if path_prefix:
            rule["pathPrefix"] = path_prefix
        return self._json(self.cp, "POST", "/_dev/fail", rule)

    def cp_reset(self):
        return self._json(self.cp, "POST", "/_dev/reset", {})

    def cp_calls(self):
        return self._json(self.cp, "GET", "/_dev/calls")

    def runner_requests(self):
        return self._json(self.runner, "GET", "/_dev/requests")

    def runner_close_idle(self):
        """Closes the runner's idle keep-alive connections; returns how many."""
        return self._json(self.runner, "POST", "/_dev/close-idle", {})["closed"]

    def runner_reset(self):
        return self._json(self.runner, "POST", "/_dev/reset", {})

    def set_sandbox(self, name_or_id, **patch):
        """Patches a sandbox in the control plane and the runner stand-in (e.g. state)."""
        sid = self.sandbox_id(name_or_id)
        self.sandbox(sid).update(patch)
        self._json(self.cp, "POST", f"/_dev/sandbox/{sid}", patch)
        if "state" in patch:
            self._json(self.runner, "POST", f"/_dev/sandbox/{sid}", {"state": patch["state"]})

    def add_sandbox(self, public=True, state="started", runner_id=None, **fields):
        """A new sandbox (fresh id: nothing about it is cached anywhere yet); returns its id."""
        sid = str(uuid.uuid4())
        runner_id = runner_id or self.runner_id
        patch = dict(fields, public=public, state=state, runnerId=runner_id)
        self._json(self.cp, "POST", f"/_dev/sandbox/{sid}", patch)
        if runner_id == self.runner_id:
            self._json(self.runner, "POST", f"/_dev/sandbox/{sid}", {"state": state})
        self.fixture["sandboxes"].append(dict(fixture_mod.SANDBOX_DEFAULTS, id=sid, **patch))
        return sid

    def runner_requests_with(self, test_id):
        """What the runner received for requests carrying `X-Test-Id: test_id`."""
        return [e for e in self.runner_requests()
                if any(k.lower() == "x-test-id" and v == test_id for k, v in e["headers"])]

    # edgegate
    def edgegate_env(self, extra_env=None):
        env = {
            "PROXY_PORT": free_port(), "BIND_ADDRESS": "127.0.0.1",
            "DAYTONA_API_URL": self.api_url, "PROXY_API_KEY": self.proxy_api_key,
            "EDGEGATE_WORKERS": 2, "UPSTREAM_RESPONSE_TIMEOUT_SEC": 2,
            "SSH_GATEWAY_PORT": free_port(),
        }
        env.update(extra_env or {})
        return clean_env(env)

    def start_edgegate(self, extra_env=None, args=(), port=None, timeout=START_TIMEOUT,
                       binary=None):
        """Starts build/edgegate (or $EDGEGATE_BIN, or `binary`) with edgegate_env(extra_env) and
        waits for GET /health to answer 200 on PROXY_PORT (or `port`, when the port comes from a
        file)."""
        env = self.edgegate_env(extra_env)
        name = "edgegate" if not self.edgegates else f"edgegate-{len(self.edgegates) + 1}"
        proc = self._start([binary or edgegate_bin(), *args], name, env=env, wait_listening=False)
        proc.port = int(port or env["PROXY_PORT"])
        proc.tls = str(env.get("ENABLE_TLS", "")).lower() == "true"
        self.edgegates.append(proc)
        try:
            wait_for_health(proc, timeout)
        except BaseException:
            self.keep_logs = True
            raise
        return proc



def start_ws_app():
    """Starts tests/support/ws_app.py (the WebSocket app; python3-websockets, so Debian's
    /usr/bin/python3) and returns its process once it listens."""
    return start_process(["/usr/bin/python3", os.path.join(HERE, "ws_app.py")], name="ws_app")

def wait_for_health(proc, timeout=START_TIMEOUT):
    def healthy():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited before answering /health\n" + proc.describe())
        if getattr(proc, "tls", False):
            conn = http.client.HTTPSConnection("127.0.0.1", proc.port, timeout=2,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=2)
        try:
            conn.request("GET", "/health", headers={"Host": f"127.0.0.1:{proc.port}"})
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    try:
        wait_until(healthy, timeout, f"{proc.name} to answer GET /health with 200")
    except TimeoutError as e:
        raise RuntimeError(f"{e}\n{proc.describe()}") from None


class StackTestCase(unittest.TestCase):
    """A test class sharing one DevStack and one edgegate (started with `edgegate_env`; set it
    to None for no edgegate). A failing test prints what every process logged meanwhile."""

    fixture_path = DEFAULT_FIXTURE
    stack_args = {}
    edgegate_env = {}
    stack = None
    eg = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack = DevStack(cls.fixture_path, **cls.stack_args).start()
        cls.addClassCleanup(cls.stack.stop)
        if cls.edgegate_env is not None:
            cls.eg = cls.stack.start_edgegate(cls.edgegate_env)

    def preview(self, path="/", *args, sandbox="public", host=None, port=None, **curl_kw):
        """curl through edgegate to a preview host (default: the echo app on `sandbox`)."""
        host = host or self.stack.preview_host(sandbox, port)
        return client.curl(f"http://127.0.0.1:{self.eg.port}{path}", "-H", f"Host: {host}", *args,
                           **curl_kw)

    def run(self, result=None):
        if result is None or self.stack is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        marks = self.stack.mark()
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            self.stack.keep_logs = True
            sys.stderr.write(f"\n===== logs of the processes during {self.id()} =====\n")
            sys.stderr.write(self.stack.describe(marks))
        return out


@contextlib.contextmanager
def temp_dir(prefix="edgegate-test-"):
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
