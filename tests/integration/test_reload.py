"""SIGHUP: the config file is re-read and validated; live settings apply, settings that need a
restart are reported and keep their value, a bad file is refused while the current
configuration keeps serving; repeated reloads under steady traffic fail no request."""
import os
import signal
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import prom  # noqa: E402
from client import curl  # noqa: E402
from stack import StackTestCase, free_port, temp_dir, wait_until  # noqa: E402
from prom import ops_get  # noqa: E402


class ReloadTest(StackTestCase):
    edgegate_env = None

    def setUp(self):
        self.dir_cm = temp_dir()
        self.dir = self.dir_cm.__enter__()
        self.addCleanup(self.dir_cm.__exit__, None, None, None)
        self.conf = os.path.join(self.dir, "edgegate.toml")
        self.metrics_port = free_port()

    def write_conf(self, text):
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)  # atomically, as a config manager would

    def start(self, conf_text, env=None):
        self.write_conf(conf_text)
        env = dict({"METRICS_PORT": self.metrics_port}, **(env or {}))
        self.eg = self.stack.start_edgegate(env, args=["--config", self.conf])
        return self.eg

    def hup_and_wait(self, text_in_log):
        mark = self.eg.mark()
        os.kill(self.eg.pid, signal.SIGHUP)
        wait_until(lambda: text_in_log in self.eg.output(mark), 10,
                   f"edgegate to log {text_in_log!r}")
        return self.eg.output(mark)

    OUTCOMES = {"SIGHUP: configuration reloaded": "applied",
                "SIGHUP: configuration refused": "refused"}

    def hup_and_outcome(self):
        """One SIGHUP, then its own outcome ("applied" or "refused") from the log line that
        reload writes; the next SIGHUP is sent only after it (signals pending at once would
        be coalesced into one reload)."""
        mark = self.eg.mark()
        os.kill(self.eg.pid, signal.SIGHUP)

        def outcome():
            found = [o for text, o in self.OUTCOMES.items() if text in self.eg.output(mark)]
            return found[0] if len(found) == 1 else found
        result = wait_until(outcome, 10, "the reload to log its outcome")
        self.assertIsInstance(result, str, f"one SIGHUP logged two outcomes: {result}")
        return result

    def reloads(self, result):
        status, _, body = ops_get(self.metrics_port, "/metrics")
        return prom.parse(body.decode()).value("edgegate_config_reloads_total", result=result)

    def test_live_setting_applies_and_restart_settings_are_reported(self):
        self.start("toolbox_only_mode = false\n")
        self.assertEqual(self.preview("/x").status, 200)
        # (The file's keys must not be in the environment, which wins over the file.)
        self.write_conf("toolbox_only_mode = true\nroute_cache_max_mb = 64\n"
                        "redis_timeout_ms = 900\n")
        log = self.hup_and_wait("SIGHUP: configuration reloaded")
        self.assertIn("ROUTE_CACHE_MAX_MB changed: needs a restart", log)
        self.assertIn("REDIS_TIMEOUT_MS changed: needs a restart", log)
        self.assertIn("applied: TOOLBOX_ONLY_MODE", log)
        # The live one applies at once, to new requests on any worker.
        for _ in range(4):
            r = self.preview("/x")
            self.assertEqual(r.status, 404, r)
        self.assertEqual(self.reloads("applied"), 1)

    def test_a_bad_config_is_refused_and_the_current_one_keeps_serving(self):
        self.start("toolbox_only_mode = true\n")
        self.assertEqual(self.preview("/x").status, 404)
        self.write_conf("toolbox_only_mode = false\nroute_stale_max_sec = 999999\n")
        log = self.hup_and_wait("SIGHUP: configuration refused")
        self.assertIn("ROUTE_STALE_MAX_SEC", log)
        self.assertEqual(self.preview("/x").status, 404, "the refused file was applied")
        self.assertEqual(self.reloads("refused"), 1)
        self.write_conf("toolbox_only_mode = false\nno_such_key = 1\n")
        self.hup_and_wait("unknown key NO_SUCH_KEY")
        self.assertEqual(self.preview("/x").status, 404)
        # Fixed: the next SIGHUP applies it.
        self.write_conf("toolbox_only_mode = false\n")
        self.hup_and_wait("SIGHUP: configuration reloaded")
        self.assertEqual(self.preview("/x").status, 200)
        self.assertEqual(self.reloads("refused"), 2)

    def test_log_level_and_format_change_live(self):
        self.start("log_level = \"info\"\nlog_format = \"json\"\n")
        self.write_conf("log_level = \"debug\"\nlog_format = \"text\"\n")
        self.hup_and_wait("configuration reloaded")
        mark = self.eg.mark()
        self.preview("/x")
        os.kill(self.eg.pid, signal.SIGHUP)  # unchanged file: a reload that says so in text
        wait_until(lambda: "configuration reloaded" in self.eg.output(mark), 10, "a reload")
        lines = [l for l in self.eg.output(mark).splitlines() if "configuration reloaded" in l]
        self.assertTrue(lines and not lines[-1].startswith("{"), lines)

    def test_reloads_under_load_fail_no_request_even_with_a_bad_config_in_the_middle(self):
        self.start("upstream_connect_timeout_sec = 5\n")
        stop = threading.Event()
        results = []
        host = self.stack.preview_host("public")

        def load():
            while not stop.is_set():
                r = curl(f"http://127.0.0.1:{self.eg.port}/load", "-H", f"Host: {host}",
                         "-H", "X-Daytona-Skip-Last-Activity-Update: true", timeout=10)
                results.append((r.status, r.exit_code))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        outcomes = []
        try:
            for i in range(12):
                if i == 6:
                    self.write_conf("upstream_connect_timeout_sec = \"soon\"\n")
                else:
                    self.write_conf(f"upstream_connect_timeout_sec = {5 + i}\n")
                outcomes.append(self.hup_and_outcome())
                # Each reload under traffic: at least one more request completes before the
                # next SIGHUP.
                seen = len(results)
                wait_until(lambda: len(results) > seen, 10, "a request after the reload")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        failed = [r for r in results if r != (200, 0)]
        self.assertGreater(len(results), 12)
        self.assertEqual(failed, [], f"{len(failed)} of {len(results)} requests failed")
        # The bad file (7th) is refused, every other one applied, each by its own SIGHUP.
        self.assertEqual(outcomes, ["applied"] * 6 + ["refused"] + ["applied"] * 5)
        self.assertEqual(self.reloads("applied"), 11)
        self.assertEqual(self.reloads("refused"), 1)
        self.assertTrue(self.eg.alive())


if __name__ == "__main__":
    unittest.main()
