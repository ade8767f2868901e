"""Every variable edgegate reads (its own list, `edgegate --list-config-keys`) is documented in
.env.example and docs/configuration.md, listed in --help, and never inherited by the tests; the
deployment files hold together (docker-compose.yml parsed, and checked by `docker compose
config` where a Docker client with Compose is installed; the Dockerfile and the systemd unit)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
import stack  # noqa: E402

# Keys with a documented name of their own that docs/configuration.md writes with an alias.
ALIASES = {"API_URL": "DAYTONA_API_URL", "API_KEY": "SSH_GATEWAY_API_KEY"}


def read(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return f.read()


def keys():
    out = subprocess.run([stack.edgegate_bin(), "--list-config-keys"], capture_output=True,
                         text=True, timeout=10, env=stack.clean_env())
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def compose_cli():
    """The docker compose command line, or None when not installed."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            r = subprocess.run(cmd + ["version"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return cmd
    return None


class ConfigKeysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = keys()

    def test_the_list_is_the_one_the_config_file_accepts(self):
        self.assertGreater(len(self.keys), 40)
        self.assertEqual(len(self.keys), len(set(self.keys)))
        for k in ("PROXY_API_KEY", "DAYTONA_API_URL", "METRICS_PORT", "LOG_FORMAT", "LOG_LEVEL"):
            self.assertIn(k, self.keys)
        for k in self.keys:
            self.assertRegex(k, r"^[A-Z][A-Z0-9_]+$")

    def test_every_key_is_in_env_example(self):
        text = read(".env.example")
        for k in self.keys:
            with self.subTest(key=k):
                self.assertRegex(text, rf"(?m)^#?{k}=", f"{k} is not in .env.example")
        # The file is plain KEY=value lines and comments (Compose and systemd read it).
        for n, line in enumerate(text.splitlines(), 1):
            self.assertRegex(line, r"^(|#.*|[A-Z][A-Z0-9_]*=.*)$", f".env.example:{n}")

    def test_every_key_is_in_the_configuration_docs(self):
        text = read("docs/configuration.md")
        for k in self.keys:
            with self.subTest(key=k):
                self.assertIn(f"`{k}`", text, f"{k} is not in docs/configuration.md")

    def test_every_key_is_in_help(self):
        out = subprocess.run([stack.edgegate_bin(), "--help"], capture_output=True, text=True,
                             timeout=10).stdout
        for k in self.keys:
            with self.subTest(key=k):
                self.assertRegex(out, rf"\b{k}\b", f"{k} is not in edgegate --help")

    def test_tests_never_inherit_a_key(self):
        self.assertEqual(sorted(set(self.keys) - set(stack.EDGEGATE_KEYS)), [],
                         "add these to EDGEGATE_KEYS in tests/support/stack.py")


class DeploymentFilesTest(unittest.TestCase):
    def test_compose_file_shape(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml is not installed")
        doc = yaml.safe_load(read("docker-compose.yml"))
        services = doc["services"]
        eg, redis = services["edgegate"], services["redis"]
        self.assertIn("2222", " ".join(eg["ports"]))
        self.assertIn(":4000", " ".join(eg["ports"]))
        self.assertIn("healthcheck", eg)
        self.assertIn("healthcheck", redis)
        self.assertIn("--requirepass", redis["command"])
        self.assertNotIn("ports", redis, "Redis must not be published")
        self.assertTrue(doc["networks"]["private"]["internal"])
        self.assertEqual(redis["networks"], ["private"])
        for name, svc in services.items():
            if name not in ("edgegate", "redis"):
                self.assertEqual(svc.get("profiles"), ["demo"], name)
        self.assertEqual(eg["depends_on"]["redis"]["condition"], "service_healthy")

    def test_docker_compose_config_accepts_the_file(self):
        cli = compose_cli()
        if cli is None:
            self.skipTest("no Docker client with Compose installed")
        env = dict(os.environ, PROXY_API_KEY="dtn_" + "0" * 64,
                   DAYTONA_API_URL="https://app.example.com/api", REDIS_PASSWORD="x" * 24)
        with tempfile.TemporaryDirectory() as tmp:
            # Compose reads .env from the project directory: give it the example.
            for f in ("docker-compose.yml", ".env.example"):
                shutil.copy(os.path.join(REPO, f), tmp)
            shutil.copy(os.path.join(tmp, ".env.example"), os.path.join(tmp, ".env"))
            os.symlink(os.path.join(REPO, "tests"), os.path.join(tmp, "tests"))
            os.symlink(os.path.join(REPO, "deploy"), os.path.join(tmp, "deploy"))
            for args in ([], ["--env-file", "deploy/demo.env", "--profile", "demo"]):
                r = subprocess.run(cli + args + ["config", "--quiet"], cwd=tmp, env=env,
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, f"{' '.join(cli + args)} config: {r.stderr}")

    def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck(self):
        text = read("Dockerfile")
        froms = re.findall(r"(?m)^FROM\s+(\S+)", text)
        self.assertGreaterEqual(len(froms), 2)
        self.assertEqual(froms[-1], "debian:12-slim")
        users = re.findall(r"(?m)^USER\s+(\S+)", text)
        self.assertTrue(users and not users[-1].startswith(("root", "0")), users)
        self.assertRegex(text, r"(?m)^HEALTHCHECK\s")

    def test_systemd_unit(self):
        text = read("deploy/edgegate.service")
        for opt in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                    "ProtectHome=yes", "DynamicUser=yes", "ExecReload=/bin/kill -HUP $MAINPID",
                    "SystemCallFilter=", "RestrictAddressFamilies="):
            self.assertIn(opt, text)
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "edgegate.service")
            with open(unit, "w") as f:
                f.write(text.replace("/usr/local/bin/edgegate", shutil.which("true")))
            r = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                               timeout=60)
            problems = [l for l in r.stderr.splitlines()
                        if "edgegate.service" in l and "EnvironmentFile" not in l]
            self.assertEqual(problems, [], r.stderr)


if __name__ == "__main__":
    unittest.main()
