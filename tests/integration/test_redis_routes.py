"""Routes through Redis (contract section 6): Daytona's keys read and written in their exact form,
one API lookup for concurrent misses, invalidation by other Redis clients, Redis down, hung or
refusing our password, and a runner that no longer has the sandbox."""
import http.client
import json
import os
import re
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error  # noqa: E402
from redis_server import RedisError, start_redis, wait_for_key  # noqa: E402
from stack import PYTHON, HERE, StackTestCase, wait_until  # noqa: E402

ROUTE_TTL = 120
PUBLIC_TTL = 3600
SWITCH_WITHIN = 1.0  # a SET or DEL by another client reaches edgegate's L1 within this


def route_key(sid):
    return f"proxy:sandbox-runner-info:{sid}"


def public_key(sid):
    return f"proxy:sandbox-public:{sid}"


def runner_info(url, api_key):
    return json.dumps({"value": {"apiUrl": url, "apiKey": api_key}}, separators=(",", ":"))


class RedisStackTestCase(StackTestCase):
    """The dev stack, a second runner stand-in (`other`: same API key, no sandboxes unless a
    test adds them), a redis-server, and edgegate pointed at it (unless edgegate_env is None)."""

    redis_password = None
    redis = None
    other = None

    @classmethod
    def setUpClass(cls):
        env = cls.edgegate_env
        cls.edgegate_env = None  # the stack first: edgegate needs Redis's port
        try:
            super().setUpClass()
        finally:
            cls.edgegate_env = env
        st = cls.stack
        cls.other = st._start([PYTHON, os.path.join(HERE, "runner_standin.py"), "--port", "0",
                               "--api-key", st.runner_api_key], "runner-other")
        cls.redis = start_redis(password=cls.redis_password, log_dir=st.tmp, procs=st.procs)
        cls.addClassCleanup(cls.redis.stop)  # before stack.stop: a paused server is resumed
        if env is not None:
            cls.eg = st.start_edgegate(cls.redis_env(env))

    @classmethod
    def redis_env(cls, extra=None):
        env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": cls.redis.port}
        if cls.redis_password is not None:
            env["REDIS_PASSWORD"] = cls.redis_password
        env.update(extra or {})
        return env

    def setUp(self):
        self.stack.cp_reset()
        self.addCleanup(self.stack.cp_reset)

    # sandboxes and where their requests went
    def host(self, sid):
        return f"{self.stack.app_port}-{sid}.proxy.localhost"

    def fresh(self, public=True):
        """A sandbox only the API and runner-1 know of: (id, preview host)."""
        sid = self.stack.add_sandbox(public=public)
        return sid, self.host(sid)

    @property
    def runner_url(self):
        return self.stack.runner.url

    @property
    def runner_key(self):
        return self.stack.runner_api_key

    def give_other(self, sid):
        self.stack._json(self.other, "POST", f"/_dev/sandbox/{sid}", {"state": "started"})

    def requests_on(self, runner, sid):
        return [e for e in self.stack._json(runner, "GET", "/_dev/requests")
                if f"/sandboxes/{sid}/" in (e.get("target") or "")]

    def api_calls(self, sid, kind=None):
        """The API calls naming sid; kind "runner" (/runners/by-sandbox) or "public"."""
        want = {"runner": f"/api/runners/by-sandbox/{sid}",
                "public": f"/api/preview/{sid}/public"}.get(kind)
        return [c for c in self.stack.cp_calls()
                if (c["path"].split("?")[0] == want if want else sid in c["path"])]

    # HTTP without curl, for loops and many threads
    def fetch(self, host, path="/", eg=None, timeout=10):
        eg = eg or self.eg
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", eg.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, body, time.monotonic() - start
        finally:
            conn.close()

    def health(self, eg=None):
        status, body, _ = self.fetch("proxy.localhost", "/health", eg=eg, timeout=5)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def wait_redis_state(self, states, timeout, eg=None):
        states = (states,) if isinstance(states, str) else tuple(states)
        seen = []

        def check():
            body = self.health(eg)
            seen.append((body.get("redis") or {}))
            return body if (body.get("redis") or {}).get("state") in states else None

        try:
            return wait_until(check, timeout, f"/health to show redis state in {states}")
        except TimeoutError as e:
            self.fail(f"{e}; last /health redis: {seen[-1] if seen else None}")

    def cache(self, host, sid):
        """Resolves sid once through edgegate and waits for its route key in Redis: it is then
        in L1 and in Redis, and no background write is still to come."""
        status, body, _ = self.fetch(host, "/warm")
        self.assertEqual(status, 200, body)
        wait_for_key(self.redis, route_key(sid))
        wait_for_key(self.redis, public_key(sid))

    def time_until_served_by(self, runner, host, sid, since, limit=3.0):
        """Requests host until `runner` receives one for sid; seconds from `since`."""
        n = [0]

        def served():
            n[0] += 1
            status, body, _ = self.fetch(host, f"/poll-{n[0]}")
            self.assertEqual(status, 200, body)
            return bool(self.requests_on(runner, sid))

        wait_until(served, limit, f"requests for {sid} to reach {runner.name}", interval=0.02)
        return time.monotonic() - since


class RouteKeysTest(RedisStackTestCase):
    edgegate_env = {"REDIS_TIMEOUT_MS": 500}

    def test_health_reports_redis_connected(self):
        body = self.wait_redis_state("connected", 10)
        self.assertEqual(body.get("status"), "ok", body)
        self.assertNotIn("error", body["redis"], body)

    def test_miss_writes_daytona_runner_and_public_keys_with_their_ttls(self):
        sid, host = self.fresh()
        r = self.preview("/x", host=host)
        self.assertEqual(r.status, 200, r)
        value = wait_for_key(self.redis, route_key(sid))
        self.assertEqual(json.loads(value),
                         {"value": {"apiUrl": self.runner_url, "apiKey": self.runner_key}})
        self.assertTrue(0 < self.redis.ttl(route_key(sid)) <= ROUTE_TTL,
                        self.redis.ttl(route_key(sid)))
        value = wait_for_key(self.redis, public_key(sid))
        self.assertEqual(json.loads(value), {"value": True})
        self.assertTrue(PUBLIC_TTL - 60 < self.redis.ttl(public_key(sid)) <= PUBLIC_TTL,
                        self.redis.ttl(public_key(sid)))

    def test_private_sandbox_is_written_as_not_public(self):
        sid, host = self.fresh(public=False)
        assert_error(self, self.preview("/x", host=host), 401, "UNAUTHORIZED", path="/x")
        value = wait_for_key(self.redis, public_key(sid))
        self.assertEqual(json.loads(value), {"value": False})
        self.assertTrue(PUBLIC_TTL - 60 < self.redis.ttl(public_key(sid)) <= PUBLIC_TTL)

    def test_route_in_redis_is_used_without_asking_the_api(self):
        sid = str(uuid.uuid4())  # unknown to the API: only Redis can route it
        self.stack._json(self.stack.runner, "POST", f"/_dev/sandbox/{sid}", {"state": "started"})
        self.redis.set(route_key(sid), runner_info(self.runner_url, self.runner_key), ex=ROUTE_TTL)
        self.redis.set(public_key(sid), '{"value":true}', ex=PUBLIC_TTL)
        r = self.preview("/from-redis", host=self.host(sid))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], "/from-redis", r)
        self.assertEqual(len(self.requests_on(self.stack.runner, sid)), 1)
        # (other calls, such as last-activity updates, may name the sandbox)
        self.assertEqual(self.api_calls(sid, "runner") + self.api_calls(sid, "public"), [],
                         "the API was asked for a route Redis had")

    def test_concurrent_misses_make_one_api_call_of_each_kind(self):
        sid, host = self.fresh()
        self.stack.cp_fail("slow", delay_ms=300)  # keep the first lookup in flight
        n = 100
        barrier = threading.Barrier(n)
        statuses = [None] * n

        def one(i):
            barrier.wait(10)
            try:
                statuses[i] = self.fetch(host, f"/c{i}", timeout=20)[0]
            except OSError as e:
                statuses[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(statuses, [200] * n)
        self.assertEqual(len(self.api_calls(sid, "runner")), 1, self.api_calls(sid))
        self.assertEqual(len(self.api_calls(sid, "public")), 1, self.api_calls(sid))

    def test_set_by_another_client_switches_the_runner_within_1s(self):
        sid, host = self.fresh()
        self.give_other(sid)
        self.cache(host, sid)
        self.assertEqual(len(self.requests_on(self.stack.runner, sid)), 1)
        self.assertEqual(self.requests_on(self.other, sid), [])
        calls = len(self.api_calls(sid, "runner"))

        self.redis.set(route_key(sid), runner_info(self.other.url, self.runner_key), ex=ROUTE_TTL)
        took = self.time_until_served_by(self.other, host, sid, time.monotonic())
        self.assertLess(took, SWITCH_WITHIN, "the SET did not reach edgegate's route cache")
        before = len(self.requests_on(self.stack.runner, sid))
        for i in range(5):
            self.assertEqual(self.fetch(host, f"/after-{i}")[0], 200)
        self.assertEqual(len(self.requests_on(self.stack.runner, sid)), before,
                         "requests went back to the old runner after the switch")
        self.assertEqual(len(self.api_calls(sid, "runner")), calls,
                         "the new route was taken from the API instead of Redis")

    def test_del_by_another_client_re_resolves_through_the_api_within_1s(self):
        sid, host = self.fresh()  # the API says runner-1
        self.give_other(sid)
        self.redis.set(route_key(sid), runner_info(self.other.url, self.runner_key), ex=ROUTE_TTL)
        self.redis.set(public_key(sid), '{"value":true}', ex=PUBLIC_TTL)
        self.assertEqual(self.fetch(host, "/on-other")[0], 200)
        self.assertEqual(len(self.requests_on(self.other, sid)), 1, "Redis's route was not used")
        self.assertEqual(self.requests_on(self.stack.runner, sid), [])

        self.redis.delete(route_key(sid))
        took = self.time_until_served_by(self.stack.runner, host, sid, time.monotonic())
        self.assertLess(took, SWITCH_WITHIN, "the DEL did not reach edgegate's route cache")
        value = wait_for_key(self.redis, route_key(sid))
        self.assertEqual(json.loads(value)["value"]["apiUrl"], self.runner_url)
        self.assertEqual(len(self.api_calls(sid, "runner")), 1, self.api_calls(sid))

    def test_runner_without_the_sandbox_drops_the_route_and_the_request_is_retried(self):
        sid, host = self.fresh()  # the API says runner-1; `other` does not have it
        self.redis.set(route_key(sid), runner_info(self.other.url, self.runner_key), ex=ROUTE_TTL)
        self.redis.set(public_key(sid), '{"value":true}', ex=PUBLIC_TTL)
        r = self.preview("/retried", host=host)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["path"], "/retried", r)
        wrong = self.requests_on(self.other, sid)
        self.assertEqual([e["status"] for e in wrong], [404], wrong)
        self.assertEqual(len(self.requests_on(self.stack.runner, sid)), 1)
        self.assertEqual(len(self.api_calls(sid, "runner")), 1, self.api_calls(sid))
        value = wait_for_key(
            self.redis, route_key(sid),
            lambda v: v is not None and json.loads(v)["value"]["apiUrl"] == self.runner_url,
            what="the route key to be re-written with runner-1")
        self.assertEqual(json.loads(value),
                         {"value": {"apiUrl": self.runner_url, "apiKey": self.runner_key}})

    def test_runner_without_the_sandbox_drops_the_route_for_requests_with_a_body(self):
        sid, host = self.fresh()
        self.redis.set(route_key(sid), runner_info(self.other.url, self.runner_key), ex=ROUTE_TTL)
        self.redis.set(public_key(sid), '{"value":true}', ex=PUBLIC_TTL)
        # Not replayable once streamed: whatever the answer, the stale route must go.
        self.preview("/with-body", "-X", "POST", "--data-binary", "payload", host=host)
        self.assertEqual(len(self.requests_on(self.other, sid)), 1)
        r = self.preview("/next", host=host)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.requests_on(self.other, sid)), 1,
                         "the route to the runner without the sandbox was kept")
        self.assertTrue(self.requests_on(self.stack.runner, sid))


class RedisOutageTest(RedisStackTestCase):
    """Redis hung (SIGSTOP) or gone: cached routes keep working, unknown sandboxes go to the
    API, and with the API failing too the answer is a bounded 503."""

    lookup_timeout = 1.0
    slack = 1.0
    edgegate_env = {"REDIS_TIMEOUT_MS": 200, "ROUTE_LOOKUP_TIMEOUT_MS": 1000,
                    "API_CLIENT_TIMEOUT_SEC": 5}

    def setUp(self):
        super().setUp()
        if not self.redis.proc.alive():
            self.redis.restart()
        self.addCleanup(self.redis.resume)
        self.wait_redis_state("connected", 15)
        self.wait_write_backs(10)

    def wait_write_backs(self, timeout):
        """Right after an earlier test's outage, /health may say "connected" a moment before
        every worker's Redis connection is back, and the API circuit breaker may still be open:
        wait until resolved routes reach Redis (three in a row, whichever worker takes them)."""
        streak = [0]

        def lands():
            sid, host = self.fresh()
            status = self.fetch(host, "/probe")[0]
            if status == 503:
                # After an outage test the API's circuit breaker stays open a moment (2 s):
                # new sandboxes fail fast until it lets a call through again.
                streak[0] = 0
                return False
            self.assertEqual(status, 200)
            try:
                wait_until(lambda: self.redis.get(route_key(sid)), 1.0, "a write-back",
                           interval=0.02)
                streak[0] += 1
            except TimeoutError:
                streak[0] = 0
            return streak[0] >= 3

        wait_until(lands, timeout, "edgegate to write resolved routes to Redis again")

    def cached_sandbox(self):
        sid, host = self.fresh()
        self.cache(host, sid)
        return sid, host

    def assert_bounded_200(self, host, what):
        status, body, took = self.fetch(host, "/during-outage", timeout=15)
        self.assertEqual(status, 200, f"{what}: {body[:500]!r}")
        self.assertLess(took, self.lookup_timeout + self.slack, what)

    def assert_bounded_503(self, host):
        r = self.preview("/x", host=host, timeout=15)
        self.assertNotEqual(r.exit_code, 28, f"edgegate hung\n{r}")
        assert_error(self, r, 503, "SERVICE_UNAVAILABLE", path="/x")
        self.assertRegex(r.header("Retry-After") or "", r"\A[0-9]+\Z", r)
        self.assertLess(r.elapsed, self.lookup_timeout + self.slack,
                        f"not answered within ROUTE_LOOKUP_TIMEOUT_MS\n{r}")

    def test_hung_redis_cached_and_unknown_sandboxes_are_served(self):
        _, cached = self.cached_sandbox()
        self.redis.pause()
        for i in range(5):
            self.assert_bounded_200(cached, f"cached sandbox, request {i}")
        sid, host = self.fresh()
        self.assert_bounded_200(host, "unknown sandbox, through the API")
        self.assertTrue(self.api_calls(sid, "runner"))
        self.wait_redis_state(("connecting", "disconnected"), 5)

    def test_hung_redis_and_failing_api_answer_503_within_the_lookup_timeout(self):
        _, cached = self.cached_sandbox()
        self.redis.pause()
        for mode in ("hang", "503"):
            with self.subTest(api=mode):
                self.stack.cp_reset()
                _, host = self.fresh()
                self.stack.cp_fail(mode)
                self.assert_bounded_503(host)
                self.assert_bounded_200(cached, "cached sandbox, Redis and API down")

    def test_resumed_redis_is_used_again_without_a_restart(self):
        pid = self.eg.pid
        _, cached = self.cached_sandbox()
        self.redis.pause()
        _, host = self.fresh()
        self.assert_bounded_200(host, "unknown sandbox, through the API")
        self.redis.resume()
        self.wait_redis_state("connected", 10)
        sid, host = self.fresh()
        self.assertEqual(self.fetch(host, "/after")[0], 200)
        wait_for_key(self.redis, route_key(sid))
        self.assertEqual(self.fetch(cached, "/after")[0], 200)
        self.assertTrue(self.eg.alive() and self.eg.pid == pid)

    def test_killed_redis_restarted_on_the_same_port_is_reconnected(self):
        _, cached = self.cached_sandbox()
        self.redis.kill()
        body = self.wait_redis_state(("connecting", "disconnected"), 5)
        self.assertIsInstance(body["redis"].get("error"), str, body)
        self.assert_bounded_200(cached, "cached sandbox, Redis gone")
        sid, host = self.fresh()
        self.assert_bounded_200(host, "unknown sandbox, Redis gone")
        self.stack.cp_fail("503")
        self.assert_bounded_200(cached, "cached sandbox, Redis and API down")
        self.stack.cp_reset()

        self.redis.restart()
        body = self.wait_redis_state("connected", 15)
        self.assertNotIn("error", body["redis"], body)
        sid, host = self.fresh()
        self.give_other(sid)
        self.cache(host, sid)  # written back to the new server
        # ... and tracking is on again: another client's SET reaches L1.
        self.redis.set(route_key(sid), runner_info(self.other.url, self.runner_key), ex=ROUTE_TTL)
        took = self.time_until_served_by(self.other, host, sid, time.monotonic())
        self.assertLess(took, SWITCH_WITHIN, "no invalidation after the reconnect")


class RedisAuthTest(RedisStackTestCase):
    """A Redis with requirepass; each test starts its own edgegate."""

    redis_password = "redis-pw-5c1d0e7a9b2f"
    edgegate_env = None

    def start(self, **env):
        eg = self.stack.start_edgegate(self.redis_env(env))
        self.addCleanup(eg.stop)
        self.eg = eg
        return eg

    def assert_no_secret(self, eg, secret, body):
        self.assertNotIn(secret, json.dumps(body))
        self.assertNotIn(secret, eg.output(), "a Redis password in edgegate's logs")

    def test_wrong_password_reports_disconnected_and_previews_use_the_api(self):
        wrong = "not-the-redis-pw-31f8a6"
        eg = self.start(REDIS_PASSWORD=wrong)
        body = self.wait_redis_state("disconnected", 10)
        error = body["redis"].get("error")
        self.assertIsInstance(error, str, body)
        self.assertRegex(error, re.compile(r"WRONGPASS|invalid.*password", re.I), body)
        sid, host = self.fresh()
        r = self.preview("/x", host=host)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(self.api_calls(sid, "runner"))
        self.assert_no_secret(eg, wrong, body)

    def test_right_password_connects_and_writes_keys(self):
        eg = self.start()
        body = self.wait_redis_state("connected", 10)
        sid, host = self.fresh()
        self.assertEqual(self.preview("/x", host=host).status, 200)
        wait_for_key(self.redis, route_key(sid))
        self.assert_no_secret(eg, self.redis_password, body)

    def test_acl_username_and_password_connect(self):
        user, password = f"edge-{uuid.uuid4().hex[:8]}", "acl-pw-0b9e4d7c"
        try:
            self.redis.command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
        except RedisError as e:
            self.skipTest(f"this redis-server has no ACLs: {e}")
        eg = self.start(REDIS_USERNAME=user, REDIS_PASSWORD=password)
        body = self.wait_redis_state("connected", 10)
        sid, host = self.fresh()
        self.assertEqual(self.preview("/x", host=host).status, 200)
        wait_for_key(self.redis, route_key(sid))
        self.assert_no_secret(eg, password, body)


if __name__ == "__main__":
    unittest.main()
