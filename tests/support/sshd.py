"""A real OpenSSH sshd standing in for a runner's SSH (contract section 9), for the SSH gateway's
integration tests, the demo and the benchmarks.

The runner's SSH trusts the username as the sandbox id. OpenSSH's sshd only logs in users that
exist, so the sandbox's user is created on first use (`ensure_sandbox_user`): a system user named
exactly after the sandbox id (appended to /etc/passwd: useradd refuses 36-character names), sharing uid/gid 0 so that the tests can
read and write their temporary directories, with its own home directory and no password.
That needs root (CI runs as root); without it, and without the user already present, the tests
skip with a message saying how to create it.

    with sshd.Sshd(tmpdir, user=sandbox_id, authorized_keys=[gateway_public_key]) as s:
        s.port
"""
import os
import pwd
import shutil
import socket
import subprocess
import time

from stack import _die_with_parent  # killed with the test process, even on SIGKILL

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server",
                                "/usr/lib/ssh/sftp-server") if os.path.exists(p)),
                   "internal-sftp")
HOME_ROOT = "/var/lib/edgegate-test-sandboxes"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def ensure_sandbox_user(name):
    """Creates the sandbox's user when missing. Returns None when it exists, else why not."""
    if user_exists(name):
        return None
    if os.geteuid() != 0:
        return (f"user {name!r} does not exist and creating it needs root: run as root, or "
                f"add '{name}:x:0:0::{HOME_ROOT}/{name}:/bin/sh' to /etc/passwd")
    home = os.path.join(HOME_ROOT, name)
    os.makedirs(home, exist_ok=True)
    # useradd refuses names longer than 32 characters even with --badname, and sandbox ids are
    # 36-character UUIDs: the entry is appended to /etc/passwd and /etc/shadow directly. The
    # shadow password is "*" (no password), not "!" (locked): with UsePAM no, sshd refuses
    # even key logins to locked accounts.
    with open("/etc/passwd", "a") as f:
        f.write(f"{name}:x:0:0:edgegate test sandbox:{home}:/bin/sh\n")
    if os.path.exists("/etc/shadow"):
        with open("/etc/shadow", "a") as f:
            f.write(f"{name}:*:19000:0:99999:7:::\n")
    if not user_exists(name):
        return f"could not add user {name} to /etc/passwd"
    return None


def keygen(path, kind="ed25519", comment="edgegate-test"):
    """An unencrypted key pair at path / path.pub; returns the public key line."""
    if not os.path.exists(path):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", path],
                       check=True)
    with open(path + ".pub") as f:
        return f.read().strip()


def fingerprint(pub_path):
    out = subprocess.run(["ssh-keygen", "-lf", pub_path], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


class Sshd:
    """sshd -D on 127.0.0.1:<free port> with a generated config in `workdir`."""

    def __init__(self, workdir, authorized_keys, port=None, extra_config=""):
        self.dir = os.path.join(workdir, "sshd")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True) if os.geteuid() == 0 else None
        self.port = port or free_port()
        self.host_key = os.path.join(self.dir, "host_ed25519")
        keygen(self.host_key, comment="sandbox-runner")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        with open(self.authorized_keys, "w") as f:
            f.write("\n".join(authorized_keys) + "\n")
        self.config = os.path.join(self.dir, "sshd_config")
        with open(self.config, "w") as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.authorized_keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
AllowTcpForwarding yes
AllowAgentForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_* EDGE_*
MaxSessions 1000
MaxStartups 1000:30:1000
LogLevel VERBOSE
Subsystem sftp {SFTP_SERVER}
{extra_config}
""")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.proc = None

    def start(self, timeout=10):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("sshd did not start: " + self.log())
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-20000:]
        except OSError:
            return ""

    # Enough of stack.Proc's interface to live in a DevStack's `procs`.
    def mark(self):
        return (0, 0)

    def describe(self, since=(0, 0), max_chars=20000):
        return f"----- sshd (port {self.port}, {self.log_path}) -----\n" + self.log()[-max_chars:]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
