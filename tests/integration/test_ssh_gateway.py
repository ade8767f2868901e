"""The SSH gateway with real OpenSSH on both sides: `ssh`/`scp`/`sftp` → edgegate → a real sshd
standing in for the runner's SSH (tests/support/sshd.py, ssh_stack.py)."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import prom  # noqa: E402
import ssh_stack  # noqa: E402
from ssh_stack import CLIENT_OPTS, PUBLIC_TOKEN, STOPPED_TOKEN, ssh_cmd  # noqa: E402
from stack import free_port, wait_until  # noqa: E402
import redis_server  # noqa: E402
import sshd as sshd_mod  # noqa: E402

MiB = 1024 * 1024


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def random_file(path, size):
    subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=open(path, "wb"),
                   check=True)
    return sha256_file(path)


class EchoServer:
    """A TCP echo server on 127.0.0.1 (a "server inside the sandbox" or on the client side)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    def close(self):
        self.sock.close()


class SessionTest(ssh_stack.SshTestCase):
    def test_exec_keeps_stdout_stderr_and_exit_code(self):
        r = self.ssh("echo out; echo err >&2; exit 7")
        self.assertEqual(r.stdout, b"out\n")
        self.assertEqual(r.stderr, b"err\n")
        self.assertEqual(r.returncode, 7)

    def test_exit_signal_is_relayed(self):
        r = self.ssh("kill -TERM $$")
        self.assertEqual(r.returncode, 255, r)  # OpenSSH's code for a remote signal
        self.assertEqual(r.stdout, b"")

    def test_stdin_eof_is_a_half_close(self):
        r = self.ssh("cat; echo after-eof", input=b"line1\nline2\n")
        self.assertEqual(r.stdout, b"line1\nline2\nafter-eof\n")
        self.assertEqual(r.returncode, 0)

    def test_env_request_is_relayed(self):
        r = subprocess.run(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, "echo $EDGE_TEST_VAR",
                                   opts=["-o", "SendEnv=EDGE_TEST_VAR"]),
                           env=dict(os.environ, EDGE_TEST_VAR="hello-env"), capture_output=True,
                           timeout=60)
        self.assertEqual(r.stdout, b"hello-env\n", r)

    def test_large_output_in_bursts(self):
        # 64 KiB bursts and more, both directions: guards the 4 KiB read / edge-trigger trap.
        data = os.urandom(3 * MiB + 12345)
        r = self.ssh("cat", input=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_password_and_keyboard_interactive_logins(self):
        askpass = os.path.join(self.env.tmp, "askpass.sh")
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\necho {PUBLIC_TOKEN}\n")
        os.chmod(askpass, 0o755)
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY="")
        for method in ("password", "keyboard-interactive"):
            opts = ["BatchMode=no" if o == "BatchMode=yes" else o for o in CLIENT_OPTS]
            cmd = ["ssh", *opts, "-o", f"PreferredAuthentications={method}",
                   "-o", "NumberOfPasswordPrompts=1", "-p", str(self.env.ssh_port),
                   "daytona@127.0.0.1", "echo logged-in"]
            r = subprocess.run(cmd, env=env, capture_output=True, timeout=60,
                               stdin=subprocess.DEVNULL, start_new_session=True)
            self.assertEqual(r.stdout, b"logged-in\n", (method, r))


class ActivityTest(ssh_stack.SshTestCase):
    def test_last_activity_is_posted_once_for_several_sessions(self):
        sid = self.env.sandbox_id
        path = f"/api/sandbox/{sid}/last-activity"

        def posts():
            return [c for c in self.env.stack.cp_calls()
                    if c["method"] == "POST" and c["path"] == path]
        for _ in range(3):
            self.assertEqual(self.ssh("true").returncode, 0)
        wait_until(posts, 10, "a last-activity POST")
        self.assertEqual(len(posts()), 1)


class TokenCheckTest(ssh_stack.SshTestCase):
    def test_concurrent_logins_share_one_token_check_per_worker(self):
        procs = [subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, "true"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _ in range(12)]
        for p in procs:
            self.assertEqual(p.wait(120), 0, p.stderr.read())
        checks = [c for c in self.env.stack.cp_calls()
                  if c["path"].startswith("/api/sandbox/ssh-access/validate")]
        workers = int(self.env.eg_env["EDGEGATE_WORKERS"])
        self.assertGreaterEqual(len(checks), 1)
        self.assertLessEqual(len(checks), workers)  # coalesced, then cached, per worker


class BulkTest(ssh_stack.SshTestCase):
    SIZE = 256 * MiB

    def test_upload_and_download_256m(self):
        path = os.path.join(self.env.tmp, "bulk.bin")
        digest = random_file(path, self.SIZE)
        with open(path, "rb") as f:
            r = self.ssh("sha256sum", stdin=f, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split()[0].decode(), digest)
        h = hashlib.sha256()
        p = subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, f"cat {path}"),
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        n = 0
        for chunk in iter(lambda: p.stdout.read(MiB), b""):
            h.update(chunk)
            n += len(chunk)
        self.assertEqual(p.wait(300), 0)
        self.assertEqual(n, self.SIZE)
        self.assertEqual(h.hexdigest(), digest)

    def test_scp_and_sftp_100m(self):
        src = os.path.join(self.env.tmp, "scp-src.bin")
        digest = random_file(src, 100 * MiB)
        target = f"{PUBLIC_TOKEN}@127.0.0.1"
        port = str(self.env.ssh_port)
        for proto in (["-s"], ["-O"]):  # SFTP-based scp and the legacy scp protocol over exec
            up = os.path.join(self.env.tmp, f"scp-up{proto[0]}.bin")
            down = os.path.join(self.env.tmp, f"scp-down{proto[0]}.bin")
            r = subprocess.run(["scp", *proto, *CLIENT_OPTS, "-P", port, src, f"{target}:{up}"],
                               capture_output=True, timeout=300)
            self.assertEqual(r.returncode, 0, r)
            self.assertEqual(sha256_file(up), digest)
            r = subprocess.run(["scp", *proto, *CLIENT_OPTS, "-P", port, f"{target}:{up}", down],
                               capture_output=True, timeout=300)
            self.assertEqual(r.returncode, 0, r)
            self.assertEqual(sha256_file(down), digest)
        up = os.path.join(self.env.tmp, "sftp-up.bin")
        down = os.path.join(self.env.tmp, "sftp-down.bin")
        batch = os.path.join(self.env.tmp, "sftp.batch")
        with open(batch, "w") as f:
            f.write(f"put {src} {up}\nget {up} {down}\nls -l {up}\n")
        r = subprocess.run(["sftp", *CLIENT_OPTS, "-P", port, "-b", batch, target],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(sha256_file(up), digest)
        self.assertEqual(sha256_file(down), digest)


class ForwardingTest(ssh_stack.SshTestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)

    def test_stdio_forward_direct_tcpip(self):
        data = os.urandom(200000)
        r = self.ssh("-W", f"127.0.0.1:{self.echo.port}", input=data)
        self.assertEqual(r.stdout, data)

    def test_local_forward(self):
        lport = free_port()
        p = subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, "-N",
                                     opts=["-L", f"127.0.0.1:{lport}:127.0.0.1:{self.echo.port}",
                                           "-o", "ExitOnForwardFailure=yes"]),
                             stdin=subprocess.DEVNULL)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)

        def roundtrip():
            try:
                with socket.create_connection(("127.0.0.1", lport), timeout=10) as s:
                    s.sendall(b"ping through -L")
                    return s.recv(100) == b"ping through -L"
            except OSError:
                return False
        wait_until(roundtrip, 30, "a round trip through ssh -L")
        with socket.create_connection(("127.0.0.1", lport), timeout=10) as s:
            payload = os.urandom(1 * MiB)
            threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
            got = b""
            while len(got) < len(payload):
                d = s.recv(65536)
                if not d:
                    break
                got += d
            self.assertEqual(got, payload)

    def test_remote_forward(self):
        rport = free_port()
        script = ("import socket; s=socket.create_connection(('127.0.0.1', %d)); "
                  "s.sendall(b'hello through -R'); print(s.recv(100).decode())" % rport)
        r = self.ssh(f"python3 -c \"{script}\"",
                     opts=["-R", f"127.0.0.1:{rport}:127.0.0.1:{self.echo.port}",
                           "-o", "ExitOnForwardFailure=yes"])
        self.assertEqual(r.stdout, b"hello through -R\n", r)
        self.assertEqual(r.returncode, 0)

    def test_agent_forwarding_with_parallel_requests(self):
        tmp = tempfile.mkdtemp(dir=self.env.tmp)
        sock = os.path.join(tmp, "agent.sock")
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
        self.addCleanup(agent.wait)
        self.addCleanup(agent.terminate)
        wait_until(lambda: os.path.exists(sock), 10, "ssh-agent's socket")
        key = os.path.join(tmp, "user_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "agent-key-xyz",
                        "-f", key], check=True)
        env = dict(os.environ, SSH_AUTH_SOCK=sock)
        subprocess.run(["ssh-add", "-q", key], env=env, check=True, capture_output=True)
        r = subprocess.run(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN,
                                   "for i in 1 2 3 4; do ssh-add -L & done; wait", opts=["-A"]),
                           env=env, capture_output=True, timeout=60)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 4, r)
        self.assertTrue(all(line.endswith("agent-key-xyz") for line in lines), lines)


class PtyTest(ssh_stack.SshTestCase):
    def test_interactive_pty_resize_and_ctrl_c(self):
        sock = os.path.join(self.env.tmp, "tmux.sock")
        tmux = ["tmux", "-S", sock]
        cmd = " ".join(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, opts=["-tt"]))
        subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "40", cmd], check=True)
        self.addCleanup(subprocess.run, [*tmux, "kill-server"], capture_output=True)

        def screen():
            return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True,
                                  text=True).stdout

        def send(keys, *extra):
            subprocess.run([*tmux, "send-keys", keys, *extra], check=True)

        send("echo READY-$((40+2))", "Enter")
        wait_until(lambda: "READY-42" in screen(), 30, "the remote shell's prompt")
        send("stty size", "Enter")
        wait_until(lambda: "40 120" in screen(), 30, "stty size 40 120")
        subprocess.run([*tmux, "resize-window", "-x", "100", "-y", "30"], check=True)
        send("clear; stty size", "Enter")
        wait_until(lambda: "30 100" in screen(), 30, "stty size after resize")
        send("sleep 987654", "Enter")
        wait_until(lambda: subprocess.run(["pgrep", "-f", "^sleep 987654"],
                                          capture_output=True).returncode == 0,
                   30, "the remote sleep to start")
        send("C-c")
        send("echo status-$?", "Enter")  # 130: the sleep died of SIGINT
        wait_until(lambda: "status-130" in screen(), 30, "Ctrl-C to interrupt the sleep")
        send("exit", "Enter")


class LoginErrorTest(ssh_stack.SshTestCase):
    def assert_told(self, token, message):
        r = self.ssh("true", token=token)
        self.assertEqual(r.returncode, 255)
        self.assertIn(message, r.stderr.decode(), r)

    def test_bad_token(self):
        self.assert_told("NoSuchToken000000000000000000000", "invalid or expired token")

    def test_expired_token(self):
        # Daytona answers {"valid": false} for an expired token just as for an unknown one.
        self.assert_told("ExpiredToken00000000000000000000", "invalid or expired token")

    def test_stopped_sandbox(self):
        sid = self.env.stack.sandbox_id("stopped")
        self.assert_told(STOPPED_TOKEN, f"sandbox {sid} is not started (state: stopped)")

    def test_api_down(self):
        self.env.stack.cp_fail("503", path_prefix="/api/sandbox/ssh-access")
        self.addCleanup(self.env.stack.cp_reset)
        self.assert_told("AnotherToken00000000000000000001",
                         "sandbox gateway is temporarily unavailable")

    def test_tokens_never_reach_the_log(self):
        self.assert_told("SecretLookingToken00000000000042", "invalid or expired token")
        self.assertEqual(self.ssh("true").returncode, 0)
        log = self.env.eg.output()
        self.assertIn("logged in to sandbox", log)
        for token in ("SecretLookingToken00000000000042", PUBLIC_TOKEN):
            self.assertNotIn(token, log)

    def test_weak_algorithms_are_refused(self):
        for opts in (["Ciphers=aes128-cbc"], ["Ciphers=aes128-ctr", "MACs=hmac-sha1"],
                     ["KexAlgorithms=diffie-hellman-group14-sha1"],
                     ["HostKeyAlgorithms=ssh-rsa"]):
            args = ["-o", "LogLevel=INFO"] + [x for o in opts for x in ("-o", o)]
            r = self.ssh("true", opts=args, timeout=30)
            self.assertEqual(r.returncode, 255, opts)
            # Whichever side finds no common algorithm first ends it: the client says "no
            # matching ...", or it sees the gateway close the connection during key exchange.
            self.assertTrue(b"no matching" in r.stderr or b"Connection closed" in r.stderr,
                            (opts, r.stderr))

    @unittest.skipUnless(os.path.exists("/usr/bin/ssh-audit"), "ssh-audit is not installed")
    def test_ssh_audit_reports_no_weak_algorithm(self):
        r = subprocess.run(["ssh-audit", "-n", "-p", str(self.env.ssh_port), "127.0.0.1"],
                           capture_output=True, text=True, timeout=60)
        # ssh-audit 2.5 does not know strict KEX (the Terrapin countermeasure) yet.
        fails = [line for line in r.stdout.splitlines()
                 if ("[fail]" in line or "[warn]" in line) and "kex-strict-" not in line]
        self.assertEqual(fails, [], r.stdout)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def under_asan(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


class LoadTest(ssh_stack.SshTestCase):
    def test_200_concurrent_sessions_stay_on_the_worker_threads(self):
        pid = self.env.eg.pid
        workers = int(self.env.eg_env["EDGEGATE_WORKERS"])
        # Warm up first: the control-plane client's first async_resolve starts Asio's hidden
        # resolver thread on each worker (auth/control_plane_client; not per session).
        for _ in range(2 * workers):
            self.assertEqual(self.ssh("true").returncode, 0)
        baseline = len(os.listdir(f"/proc/{pid}/task"))
        self.assertLessEqual(baseline, 2 * workers)
        seen = {baseline}
        stop = threading.Event()

        def sample():  # a measurement, not a synchronisation
            while not stop.is_set():
                seen.add(len(os.listdir(f"/proc/{pid}/task")))
                stop.wait(0.02)
        sampler = threading.Thread(target=sample)
        sampler.start()
        procs = [subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, f"echo session-{i}"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL) for i in range(200)]
        try:
            for i, p in enumerate(procs):
                out, err = p.communicate(timeout=180)
                self.assertEqual((p.returncode, out), (0, f"session-{i}\n".encode()), err)
        finally:
            stop.set()
            sampler.join()
            for p in procs:
                if p.poll() is None:
                    p.kill()
        self.assertEqual(seen, {baseline}, "edgegate's thread count while 200 sessions ran")

    def test_slow_reader_keeps_gateway_memory_bounded(self):
        pid = self.env.eg.pid
        size = 1024 * MiB
        p = subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, f"head -c {size} /dev/zero"),
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        got = len(p.stdout.read(MiB))  # flowing; from here on nobody reads
        before = rss_kib(pid)
        peak = before
        deadline = time.monotonic() + 3  # a measurement window, not a synchronisation
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)
        if not under_asan(pid):
            self.assertLess(peak - before, 32 * 1024, f"RSS grew from {before} to {peak} KiB")
        while True:  # and the stream resumes, complete, once the reader reads again
            chunk = p.stdout.read(4 * MiB)
            if not chunk:
                break
            got += len(chunk)
        self.assertEqual(p.wait(120), 0)
        self.assertEqual(got, size)

    @unittest.skipUnless(os.path.exists("/usr/bin/dbclient"), "dropbear-bin is not installed")
    def test_small_window_client_download_keeps_gateway_memory_bounded(self):
        # dropbear's client opens 24 KiB of window at a time, OpenSSH's 2 MiB. The gateway used
        # to take what waited for such a client out of libssh a window at a time, and libssh
        # re-opened the runner's window by 1.28 MB on each read: the gateway held the download.
        pid = self.env.eg.pid
        size = 128 * MiB
        path = os.path.join(self.env.tmp, "small-window.bin")
        digest = random_file(path, size)
        p = subprocess.Popen(["dbclient", "-y", "-y", "-W", "24576", "-p", str(self.env.ssh_port),
                              f"{PUBLIC_TOKEN}@127.0.0.1", f"cat {path}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env={**os.environ, "HOME": self.env.tmp})
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        before = peak = rss_kib(pid)
        h = hashlib.sha256()
        got = 0
        for chunk in iter(lambda: p.stdout.read(MiB), b""):
            h.update(chunk)
            got += len(chunk)
            peak = max(peak, rss_kib(pid))
        self.assertEqual(p.wait(120), 0, p.stderr.read())
        self.assertEqual((got, h.hexdigest()), (size, digest))
        if not under_asan(pid):
            self.assertLess(peak - before, 32 * 1024, f"RSS grew from {before} to {peak} KiB")


class LimitsTest(ssh_stack.SshTestCase):
    edgegate_env = {"SSH_LOGIN_GRACE_SEC": 3, "SSH_MAX_UNAUTHENTICATED": 2}

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.env.ssh_port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_login_grace_time(self):
        s = self.connect()
        self.assertTrue(s.recv(256).startswith(b"SSH-2.0-"))
        started = time.monotonic()
        while s.recv(4096):  # the server closes the silent client after the grace time
            pass
        self.assertLess(time.monotonic() - started, 10)

    def test_cap_on_connections_still_logging_in(self):
        first, second = self.connect(), self.connect()
        for s in (first, second):
            self.assertTrue(s.recv(256).startswith(b"SSH-2.0-"))
        third = self.connect()
        self.assertEqual(third.recv(256), b"")  # closed at accept, no banner
        first.close()
        second.close()
        wait_until(lambda: self.ssh("true").returncode == 0, 20,
                   "a login once the slots are free again")


class RunnerHostKeyPinTest(ssh_stack.SshTestCase):
    """SSH_RUNNER_HOST_KEY_CHECK=tofu with Redis: the first key is pinned there, a change refuses."""

    @classmethod
    def setUpClass(cls):
        if not redis_server.shutil.which("redis-server"):
            raise unittest.SkipTest("redis-server is not installed")
        cls.redis = redis_server.start_redis()
        cls.addClassCleanup(cls.redis.stop)
        cls.edgegate_env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": cls.redis.port}
        super().setUpClass()

    def test_first_key_is_pinned_and_a_change_refused(self):
        key = f"edgegate:ssh-runner-host-key:127.0.0.1:{self.env.sshd.port}"
        self.assertEqual(self.ssh("true").returncode, 0)
        self.assertEqual(self.redis.get(key),
                         sshd_mod.fingerprint(self.env.sshd.host_key + ".pub"))
        real = self.redis.get(key)
        self.redis.set(key, "SHA256:someone-else-s-key")
        self.addCleanup(self.redis.set, key, real)
        r = self.ssh("true")
        self.assertEqual(r.returncode, 255)
        self.assertIn(b"sandbox gateway is temporarily unavailable", r.stderr)
        self.assertIn("changed (SHA256:someone-else-s-key pinned in Redis", self.env.eg.output())


def port_refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # Queued on a worker's listener as it closed (each worker has its own, SO_REUSEPORT):
        # reset, not refused yet. The next attempt tells.
        return False


class ShutdownTest(ssh_stack.SshTestCase):
    """SIGTERM: the SSH port refuses new connections at once, open sessions go on."""
    edgegate_env = {"SHUTDOWN_TIMEOUT_SEC": 60}

    def test_sigterm_lets_a_running_command_finish_and_refuses_new_connections(self):
        eg = self.env.eg
        p = subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN,
                                     "sleep 1; echo t1; sleep 2; cat; echo done"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(p.kill)
        self.assertEqual(p.stdout.readline(), b"t1\n")  # one second into the command
        eg.popen.terminate()
        wait_until(lambda: port_refuses(self.env.ssh_port), 10,
                   "the SSH port to refuse connections after SIGTERM")
        r = self.ssh("true", timeout=30)
        self.assertEqual(r.returncode, 255)
        self.assertIn(b"refused", r.stderr)
        # stdin still flows to the running command, its output back
        out, err = p.communicate(b"still here\n", timeout=30)
        self.assertEqual((p.returncode, out), (0, b"still here\ndone\n"), err)
        self.assertEqual(eg.popen.wait(15), 0)  # the last session is gone: exit at once
        self.assertNotIn("restarting", eg.output())


class ShutdownDeadlineTest(ssh_stack.SshTestCase):
    """SHUTDOWN_TIMEOUT_SEC reached: the client is told the gateway is restarting."""
    edgegate_env = {"SHUTDOWN_TIMEOUT_SEC": 2}

    def test_a_long_session_gets_the_restart_message_at_the_deadline(self):
        eg = self.env.eg
        p = subprocess.Popen(ssh_cmd(self.env.ssh_port, PUBLIC_TOKEN, "echo started; sleep 120"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(p.kill)
        self.assertEqual(p.stdout.readline(), b"started\n")
        signalled = time.monotonic()
        eg.popen.terminate()
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 255, err)
        self.assertIn(b"sandbox gateway is restarting, please reconnect", err)
        self.assertEqual(eg.popen.wait(15), 0)
        # within the deadline (2 s), with slack for a loaded machine
        self.assertLess(time.monotonic() - signalled, 4, eg.output()[-2000:])
        events = session_events(eg.output())
        self.assertEqual(events[-1]["close_reason"], "gateway_restart", events[-1])


def session_events(log):
    """The ssh_session lines of edgegate's log (LOG_FORMAT=json, the default)."""
    events = []
    for line in log.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "ssh_session":
            events.append(rec)
    return events


class SessionLogAndMetricsTest(ssh_stack.SshTestCase):
    """One ssh_session line per connection (never the token) and the SSH metrics."""

    @classmethod
    def setUpClass(cls):
        cls.metrics_port = free_port()
        cls.edgegate_env = {"METRICS_PORT": cls.metrics_port}
        super().setUpClass()

    def test_session_line_and_metrics_match_the_traffic(self):
        sid = self.env.sandbox_id
        before = prom.scrape(self.metrics_port)[0]
        payload = os.urandom(100000)
        echo = EchoServer()
        self.addCleanup(echo.close)
        # one session channel (exec, exit 3, 100000 bytes up, 5 down) ...
        r = self.ssh("cat > /dev/null; echo -n hello; exit 3", input=payload)
        self.assertEqual((r.returncode, r.stdout), (3, b"hello"), r.stderr)
        # ... one direct-tcpip channel (ssh -W: 5000 bytes each way)
        r = self.ssh("-W", f"127.0.0.1:{echo.port}", input=b"x" * 5000)
        self.assertEqual(r.stdout, b"x" * 5000)
        # ... and a failed login
        r = self.ssh("true", token="NoSuchToken000000000000000000000")
        self.assertEqual(r.returncode, 255)

        def lines():
            return session_events(self.env.eg.output())
        wait_until(lambda: len(lines()) >= 3, 10, "three ssh_session lines")
        self.assertEqual(len(lines()), 3, lines())
        exec_line, = [e for e in lines() if e["channels_session"] == 1]
        fwd_line, = [e for e in lines() if e["channels_direct_tcpip"] == 1]
        failed, = [e for e in lines() if not e["logged_in"]]
        self.assertEqual(exec_line["sandbox"], sid)
        self.assertEqual(exec_line["logged_in"], True)
        self.assertEqual(exec_line["channels_session"], 1)
        self.assertEqual(exec_line["channels_direct_tcpip"], 0)
        self.assertEqual(exec_line["bytes_up"], len(payload))
        self.assertEqual(exec_line["bytes_down"], 5)
        self.assertEqual(exec_line["exit_status"], 3)
        self.assertEqual(exec_line["close_reason"], "client_closed")
        self.assertIsNone(exec_line["error"])
        self.assertGreater(exec_line["duration_ms"], 0)
        self.assertEqual(exec_line["runner"], "127.0.0.1")
        self.assertEqual((fwd_line["channels_session"], fwd_line["channels_direct_tcpip"]),
                         (0, 1))
        self.assertEqual((fwd_line["bytes_up"], fwd_line["bytes_down"]), (5000, 5000))
        self.assertIsNone(fwd_line["exit_status"])
        self.assertEqual(failed["logged_in"], False)
        self.assertIsNone(failed["sandbox"])
        self.assertEqual(failed["close_reason"], "login_failed")
        self.assertEqual(failed["error"], "invalid or expired token")
        log = self.env.eg.output()
        for token in ("NoSuchToken000000000000000000000", PUBLIC_TOKEN):
            self.assertNotIn(token, log)

        after = prom.scrape(self.metrics_port)[0]

        def delta(name, **labels):
            return after.total(name, **labels) - before.total(name, **labels)
        self.assertEqual(delta("edgegate_ssh_connections_total", result="accepted"), 3)
        self.assertEqual(delta("edgegate_ssh_logins_total", outcome="ok"), 2)
        self.assertEqual(delta("edgegate_ssh_logins_total", outcome="invalid_token"), 1)
        self.assertEqual(delta("edgegate_ssh_channels_total", type="session"), 1)
        self.assertEqual(delta("edgegate_ssh_channels_total", type="direct-tcpip"), 1)
        self.assertEqual(delta("edgegate_ssh_bytes_total", direction="up"), len(payload) + 5000)
        self.assertEqual(delta("edgegate_ssh_bytes_total", direction="down"), 5 + 5000)
        self.assertEqual(delta("edgegate_ssh_relay_errors_total"), 0)
        self.assertEqual(after.value("edgegate_ssh_sessions"), 0)
        self.assertEqual(delta("edgegate_ssh_login_duration_seconds_count"), 2)
        text = prom.ops_get(self.metrics_port, "/metrics")[2].decode()
        for secret in (sid, PUBLIC_TOKEN, "127.0.0.1"):
            self.assertNotIn(secret, text)


class RunnerUnreachableTest(ssh_stack.SshTestCase):
    edgegate_env = {"RUNNER_SSH_PORT": 1}

    def test_runner_ssh_down(self):
        r = self.ssh("true")
        self.assertEqual(r.returncode, 255)
        self.assertIn("sandbox gateway is temporarily unavailable", r.stderr.decode(), r)


if __name__ == "__main__":
    unittest.main()
