#!/usr/bin/env python3
"""A small OpenID Connect provider for the login tests (contract section 3): discovery,
authorization code with PKCE S256 (the only method it accepts), and the token endpoint.

    python3 tests/support/oidc_standin.py [--host 127.0.0.1] --port P \
        [--client-id daytona] [--client-secret S] [--access-token TOKEN] [--quiet]

Prints `listening on HOST:PORT` once ready. The issuer is http://HOST:PORT.

    GET  /.well-known/openid-configuration
    GET  /authorize?response_type=code&client_id=&redirect_uri=&scope=&state=
                    &code_challenge=&code_challenge_method=S256[&audience=]
         logs in at once as the current user: 302 to redirect_uri?code=...&state=...
         (400 JSON when a parameter is missing or wrong)
    POST /token     grant_type=authorization_code&code=&redirect_uri=&client_id=&code_verifier=
                    [&client_secret= | Authorization: Basic]; a code works once, within 60 s
         200 {"access_token": <the user's token>, "token_type": "Bearer", ...}
         400 {"error": "invalid_grant" | "invalid_request" | "invalid_client"}
Test controls:
    POST /_dev/user   {"accessToken": T}: who logs in next
    GET  /_dev/calls  [{method, path, status}]
    POST /_dev/reset  forget codes and calls
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httputil  # noqa: E402

CODE_TTL = 60.0


class State:
    def __init__(self, client_id, client_secret, access_token):
        self.lock = threading.Lock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token = access_token
        self.codes = {}  # code -> {client_id, redirect_uri, challenge, token, expires}
        self.calls = []


def s256(verifier):
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcHandler(httputil.Handler):
    state = None

    def issuer(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return "http://" + host

    def record(self, status):
        with self.state.lock:
            self.state.calls.append({"method": self.command, "path": self.path_only,
                                     "status": status})
            del self.state.calls[:-1000]

    def fail(self, status, error, description=""):
        self.record(status)
        self.send_json(status, {"error": error, "error_description": description})

    def dispatch(self):
        path = self.path_only
        body = b"".join(self.iter_body())
        if path == "/.well-known/openid-configuration" and self.command == "GET":
            iss = self.issuer()
            self.record(200)
            return self.send_json(200, {
                "issuer": iss, "authorization_endpoint": iss + "/authorize",
                "token_endpoint": iss + "/token", "jwks_uri": iss + "/keys",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "client_secret_basic", "none"]})
        if path == "/authorize" and self.command == "GET":
            return self.authorize()
        if path == "/token" and self.command == "POST":
            return self.token(body)
        if path == "/_dev/user" and self.command == "POST":
            with self.state.lock:
                self.state.access_token = json.loads(body or b"{}").get("accessToken")
            return self.send_json(200, {"ok": True})
        if path == "/_dev/calls" and self.command == "GET":
            with self.state.lock:
                return self.send_json(200, list(self.state.calls))
        if path == "/_dev/reset" and self.command == "POST":
            with self.state.lock:
                self.state.codes.clear()
                self.state.calls.clear()
            return self.send_json(200, {"ok": True})
        self.fail(404, "not_found", f"no {self.command} {path}")

    def authorize(self):
        q = dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))
        st = self.state
        if q.get("response_type") != "code":
            return self.fail(400, "unsupported_response_type")
        if q.get("client_id") != st.client_id:
            return self.fail(400, "invalid_client", "unknown client_id")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self.fail(400, "invalid_request", "PKCE S256 is required")
        scopes = q.get("scope", "").split(" ")
        if "openid" not in scopes:
            return self.fail(400, "invalid_scope", "openid is required")
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")) or not q.get("state"):
            return self.fail(400, "invalid_request", "redirect_uri and state are required")
        code = secrets.token_urlsafe(24)
        with st.lock:
            st.codes[code] = {"client_id": st.client_id, "redirect_uri": redirect_uri,
                              "challenge": q["code_challenge"], "token": st.access_token,
                              "expires": time.monotonic() + CODE_TTL}
        sep = "&" if "?" in redirect_uri else "?"
        location = redirect_uri + sep + urllib.parse.urlencode({"code": code,
                                                                 "state": q["state"]})
        self.record(302)
        self.send_bytes(302, b"", "text/plain", headers=[("Location", location)])

    def token(self, body):
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        st = self.state
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, secret = urllib.parse.unquote(user), urllib.parse.unquote(pw)
        if client_id != st.client_id or (st.client_secret and secret != st.client_secret):
            return self.fail(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return self.fail(400, "unsupported_grant_type")
        with st.lock:
            entry = st.codes.pop(form.get("code", ""), None)  # single use
        if entry is None or entry["expires"] < time.monotonic():
            return self.fail(400, "invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != entry["redirect_uri"]:
            return self.fail(400, "invalid_grant", "redirect_uri differs from the authorize call")
        if s256(form.get("code_verifier", "")) != entry["challenge"]:
            return self.fail(400, "invalid_grant", "code_verifier does not match the challenge")
        if not entry["token"]:
            return self.fail(400, "invalid_grant", "no user logged in")
        self.record(200)
        self.send_json(200, {"access_token": entry["token"], "token_type": "Bearer",
                             "expires_in": 3600, "scope": "openid profile",
                             "id_token": "standin." + secrets.token_urlsafe(8) + ".unsigned"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--client-id", default="daytona")
    p.add_argument("--client-secret", default="")
    p.add_argument("--access-token", default="user-token-699866d4e82b52d924978391a5f5fd00")
    httputil.add_common_args(p)
    args = p.parse_args(argv)
    OidcHandler.state = State(args.client_id, args.client_secret, args.access_token)
    OidcHandler.quiet = args.quiet
    server = httputil.Server((args.host, args.port), OidcHandler)
    httputil.serve(server)


if __name__ == "__main__":
    main()
