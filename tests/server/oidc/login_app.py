#!/usr/bin/env python3
"""The login and consent app of the test OIDC provider (tests/server/oidc/hydra).

Ory Hydra leaves asking for a password to an app of the deployment: it
redirects the browser to this app's /login and /consent with a challenge,
and the app accepts them through Hydra's admin API. This one checks the
users in USERS_JSON ({"email": {"password": ..., "groups": [...]}}) with an
HTML form and puts the user's email and groups in the ID token.

    login_app.py PORT ADMIN_URL CA_FILE USERS_JSON CERT KEY

It serves HTTPS with CERT and KEY (Hydra outside its dev mode sends browsers
to https URLs only).
"""
import html
import json
import ssl
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, ADMIN, CA, USERS = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4]
CONTEXT = ssl.create_default_context(cafile=CA)


def admin(method, path, body=None):
    req = urllib.request.Request(ADMIN + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=CONTEXT, timeout=10) as res:
        return json.load(res)


FORM = """<!doctype html><title>Log in</title>
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="{challenge}">
<label>Email <input name="email"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Log in</button></form><p>{error}</p>"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # no request log: query strings carry challenges
        pass

    def answer(self, code, text, location=None):
        body = text.encode()
        self.send_response(code)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/login":
            challenge = query.get("login_challenge", [""])[0]
            self.answer(200, FORM.format(challenge=html.escape(challenge), error=""))
        elif url.path == "/consent":
            challenge = query.get("consent_challenge", [""])[0]
            q = "?consent_challenge=" + urllib.parse.quote(challenge)
            request = admin("GET", "/admin/oauth2/auth/requests/consent" + q)
            with open(USERS) as f:
                user = json.load(f)[request["subject"]]
            accepted = admin("PUT", "/admin/oauth2/auth/requests/consent/accept" + q, {
                "grant_scope": request["requested_scope"],
                "grant_access_token_audience": request["requested_access_token_audience"],
                "session": {"id_token": {"email": request["subject"], "groups": user["groups"]}},
            })
            self.answer(302, "", accepted["redirect_to"])
        else:
            self.answer(404, "not found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        challenge = form.get("login_challenge", [""])[0]
        email, password = form.get("email", [""])[0], form.get("password", [""])[0]
        with open(USERS) as f:
            users = json.load(f)
        if email not in users or users[email]["password"] != password:
            self.answer(401, FORM.format(challenge=html.escape(challenge), error="wrong email or password"))
            return
        q = "?login_challenge=" + urllib.parse.quote(challenge)
        accepted = admin("PUT", "/admin/oauth2/auth/requests/login/accept" + q, {"subject": email})
        self.answer(302, "", accepted["redirect_to"])


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(sys.argv[5], sys.argv[6])
server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
