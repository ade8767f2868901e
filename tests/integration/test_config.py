"""Command line and configuration: --check-config, --version, --config FILE (env wins)."""
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from stack import DevStack, clean_env, edgegate_bin, free_port  # noqa: E402

API_URL = "http://127.0.0.1:9/api"  # never called: --check-config only validates
CHECKED = ("PROXY_API_KEY", "PROXY_PORT", "DAYTONA_API_URL", "TLS_CERT_FILE")


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.secret = "dtn_" + secrets.token_hex(32)
        self.tmp = tempfile.mkdtemp(prefix="edgegate-config-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def valid_env(self, **overrides):
        env = {"PROXY_API_KEY": self.secret, "DAYTONA_API_URL": API_URL,
               "PROXY_PORT": free_port(), "BIND_ADDRESS": "127.0.0.1"}
        env.update(overrides)
        return env

    def run_edgegate(self, *args, env=None):
        proc = subprocess.run([edgegate_bin(), *args], env=clean_env(env), capture_output=True,
                              text=True, timeout=20, cwd=self.tmp)
        out = proc.stdout + proc.stderr
        self.assertNotIn(self.secret, out, "the proxy API key was printed")
        self.assertNotIn(self.secret[4:], out, "the proxy API key was printed")
        return proc.returncode, out

    def assert_problems(self, env, names, *args):
        code, out = self.run_edgegate("--check-config", *args, env=env)
        self.assertNotEqual(code, 0, f"--check-config accepted a bad config:\n{out}")
        lines = out.splitlines()
        for name in names:
            naming = [ln for ln in lines if name in ln]
            self.assertTrue(naming, f"no line names {name}:\n{out}")
        for ln in lines:
            named = [n for n in CHECKED if n in ln and n in names]
            self.assertLessEqual(len(named), 1, f"one line for several problems: {ln!r}\n{out}")
        return out

    def test_valid_environment_passes(self):
        code, out = self.run_edgegate("--check-config", env=self.valid_env())
        self.assertEqual(code, 0, out)

    def test_missing_proxy_api_key(self):
        self.assert_problems(self.valid_env(PROXY_API_KEY=None), ["PROXY_API_KEY"])

    def test_bad_proxy_port(self):
        for port in ("abc", "0", "65536", "-1", "80x"):
            with self.subTest(port=port):
                self.assert_problems(self.valid_env(PROXY_PORT=port), ["PROXY_PORT"])

    def test_api_url_without_scheme(self):
        for url in ("localhost:3000", "127.0.0.1:3000/api", "ftp://x/api"):
            with self.subTest(url=url):
                self.assert_problems(self.valid_env(DAYTONA_API_URL=url), ["DAYTONA_API_URL"])

    def test_tls_with_an_unreadable_certificate(self):
        key = os.path.join(self.tmp, "key.pem")
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
        for cert in (os.path.join(self.tmp, "missing", "cert.pem"), self.tmp):
            with self.subTest(cert=cert):
                self.assert_problems(self.valid_env(ENABLE_TLS="true", TLS_CERT_FILE=cert,
                                                    TLS_KEY_FILE=key), ["TLS_CERT_FILE"])

    def test_tls_sni_certificates_are_checked(self):
        pem = os.path.join(self.tmp, "ok.pem")
        with open(pem, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
        base = dict(ENABLE_TLS="true", TLS_CERT_FILE=pem, TLS_KEY_FILE=pem)
        missing = os.path.join(self.tmp, "missing.pem")
        for value in (f"{pem}", f"{pem}:", f":{pem}", f"{pem}:{missing}",
                      f"{pem}:{pem}, {missing}:{pem}"):
            with self.subTest(value=value):
                out = self.assert_problems(self.valid_env(TLS_SNI_CERTS=value, **base),
                                           ["TLS_SNI_CERTS"])
                self.assertNotIn("TLS_CERT_FILE", out)
        code, out = self.run_edgegate("--check-config", env=self.valid_env(
            TLS_SNI_CERTS=f"{pem}:{pem}, {pem}:{pem}", **base))
        self.assertEqual(code, 0, out)

    def test_every_problem_is_reported_on_its_own_line(self):
        env = self.valid_env(PROXY_API_KEY=None, PROXY_PORT="abc",
                             DAYTONA_API_URL="localhost:3000", ENABLE_TLS="true",
                             TLS_CERT_FILE=os.path.join(self.tmp, "nope.pem"),
                             TLS_KEY_FILE=os.path.join(self.tmp, "nope.key"))
        self.assert_problems(env, list(CHECKED))

    def test_secret_is_not_printed_with_problems(self):
        # run_edgegate asserts the key never appears, here next to a problem report.
        self.assert_problems(self.valid_env(PROXY_PORT="abc", DAYTONA_API_URL="localhost:3000"),
                             ["PROXY_PORT", "DAYTONA_API_URL"])

    def test_version(self):
        code, out = self.run_edgegate("--version", env={})
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"\d+\.\d+\.\d+")

    # --- --config FILE ------------------------------------------------------------------------
    def write_config(self, **values):
        path = os.path.join(self.tmp, "edgegate.toml")
        lines = ["# edgegate test configuration", ""]
        for k, v in values.items():
            lines.append(f"{k} = {v if isinstance(v, int) else chr(34) + v + chr(34)}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_config_file_alone(self):
        path = self.write_config(PROXY_API_KEY=self.secret, DAYTONA_API_URL=API_URL,
                                 PROXY_PORT=free_port(), BIND_ADDRESS="127.0.0.1")
        code, out = self.run_edgegate("--config", path, "--check-config", env={})
        self.assertEqual(code, 0, out)

    def test_problem_in_config_file_is_reported(self):
        path = self.write_config(PROXY_API_KEY=self.secret, DAYTONA_API_URL=API_URL,
                                 PROXY_PORT="abc")
        self.assert_problems({}, ["PROXY_PORT"], "--config", path)

    def test_environment_wins_over_the_file(self):
        path = self.write_config(PROXY_API_KEY=self.secret, DAYTONA_API_URL="localhost:3000",
                                 PROXY_PORT="abc")
        env = {"PROXY_PORT": free_port(), "DAYTONA_API_URL": API_URL}
        code, out = self.run_edgegate("--config", path, "--check-config", env=env)
        self.assertEqual(code, 0, out)

    def test_missing_config_file(self):
        path = os.path.join(self.tmp, "nope.toml")
        code, out = self.run_edgegate("--config", path, "--check-config", env=self.valid_env())
        self.assertNotEqual(code, 0, out)
        self.assertIn("nope.toml", out)


class ConfigFileServesTest(unittest.TestCase):
    """edgegate started with --config listens where the file (or the environment) says."""

    @classmethod
    def setUpClass(cls):
        cls.stack = DevStack().start()
        cls.addClassCleanup(cls.stack.stop)

    def config(self, port):
        path = os.path.join(self.stack.tmp, f"edgegate-{port}.toml")
        with open(path, "w") as f:
            f.write(f'PROXY_API_KEY = "{self.stack.proxy_api_key}"\n'
                    f'DAYTONA_API_URL = "{self.stack.api_url}"\n'
                    f"PROXY_PORT = {port}\nBIND_ADDRESS = \"127.0.0.1\"\n")
        return path

    def test_port_from_the_file(self):
        port = free_port()
        eg = self.stack.start_edgegate(
            {"PROXY_PORT": None, "PROXY_API_KEY": None, "DAYTONA_API_URL": None},
            args=["--config", self.config(port)], port=port)
        self.addCleanup(eg.stop)
        # The key and API URL came from the file too: a preview request works end to end.
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                            "10", "-H", f"Host: {self.stack.preview_host('public')}",
                            f"http://127.0.0.1:{port}/x"], capture_output=True, text=True)
        self.assertEqual(r.stdout, "200", r.stderr)

    def test_port_from_the_environment_wins(self):
        file_port, env_port = free_port(), free_port()
        eg = self.stack.start_edgegate({"PROXY_PORT": env_port},
                                       args=["--config", self.config(file_port)], port=env_port)
        self.addCleanup(eg.stop)
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                            f"http://127.0.0.1:{file_port}/health"], capture_output=True)
        self.assertNotEqual(r.returncode, 0, "edgegate also listens on the file's port")


if __name__ == "__main__":
    unittest.main()
