"""The SSH gateway's test setup: the dev stack, a real sshd as the runner's SSH (sshd.py), keys,
and edgegate with the SSH gateway on. Plus `ssh_cmd()` for the real OpenSSH client.

    class MyTest(ssh_stack.SshTestCase):
        def test_x(self):
            r = self.ssh("echo hi")          # ssh <token>@127.0.0.1 -p <gateway port> 'echo hi'
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sshd as sshd_mod  # noqa: E402
import stack as stack_mod  # noqa: E402

PUBLIC_TOKEN = "rIkXdlEYF7zYrtYa2o3u1M0TOP5vPMyd"
STOPPED_TOKEN = "stoppedSandboxSshToken0000000001"

CLIENT_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
               "-o", "ServerAliveInterval=0"]


def ssh_cmd(port, user, *args, opts=()):
    # ssh takes the first value it sees of an option: the caller's go first.
    return ["ssh", *opts, *CLIENT_OPTS, "-p", str(port), f"{user}@127.0.0.1", *args]


class SshStack:
    def __init__(self, edgegate_env=None):
        self.extra_env = edgegate_env or {}
        self.stack = None
        self.sshd = None
        self.eg = None

    def start(self):
        self.stack = stack_mod.DevStack().start()
        try:
            self.tmp = self.stack.tmp
            self.sandbox_id = self.stack.sandbox_id("public")
            why = sshd_mod.ensure_sandbox_user(self.sandbox_id)
            if why:
                raise unittest.SkipTest(why)
            self.runner_key = os.path.join(self.tmp, "gateway_runner_key")
            runner_pub = sshd_mod.keygen(self.runner_key, comment="edgegate-gateway")
            self.host_key = os.path.join(self.tmp, "gateway_host_key")
            sshd_mod.keygen(self.host_key, comment="edgegate-host")
            self.sshd = sshd_mod.Sshd(self.tmp, [runner_pub]).start()
            self.ssh_port = stack_mod.free_port()
            env = {"SSH_GATEWAY_API_KEY": self.stack.fixture["sshGatewayApiKey"],
                   "SSH_PRIVATE_KEY_FILE": self.runner_key, "SSH_HOST_KEY_FILE": self.host_key,
                   "RUNNER_SSH_PORT": self.sshd.port, "SSH_GATEWAY_PORT": self.ssh_port}
            env.update(self.extra_env)
            self.gateway_env = env
            self.eg = self.stack.start_edgegate(env)
            self.eg_env = self.stack.edgegate_env(env)
        except BaseException:
            self.stop()
            raise
        return self

    def start_gateway(self, binary):
        """One more edgegate (the executable `binary`) in front of the same sshd and control
        plane, on its own ports; returns the process and its SSH port."""
        port = stack_mod.free_port()
        return self.stack.start_edgegate({**self.gateway_env, "SSH_GATEWAY_PORT": port},
                                         binary=binary), port

    def stop(self):
        if self.sshd:
            self.sshd.stop()
        if self.stack:
            self.stack.stop()

    def describe(self):
        out = self.stack.describe() if self.stack else ""
        if self.sshd:
            out += "\n----- sshd -----\n" + self.sshd.log()[-6000:]
        return out


class SshTestCase(unittest.TestCase):
    """One dev stack, sshd and edgegate per class; logs printed when a test fails."""
    edgegate_env = {}
    env = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for tool in ("ssh", "sshd", "ssh-keygen", "useradd"):
            if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
                raise unittest.SkipTest(f"{tool} is not installed (scripts/install-deps.sh)")
        cls.env = SshStack(cls.edgegate_env).start()
        cls.addClassCleanup(cls.env.stop)

    def ssh(self, *args, token=PUBLIC_TOKEN, opts=(), input=None, timeout=120, port=None,
            **kw):
        return subprocess.run(ssh_cmd(port or self.env.ssh_port, token, *args, opts=opts),
                              input=input, capture_output=True, timeout=timeout, **kw)

    def run(self, result=None):
        if result is None or self.env is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            sys.stderr.write(f"\n===== logs during {self.id()} =====\n" + self.env.describe())
        return out
