#!/usr/bin/env python3
"""Every answer leaves its record: an outsider's check of the audit trail against the answers.

    bench/attack/records.py            # uses target/release/strongroom (BIN= for another)

Starts an embedded-store vault (`strongroom dev`, loopback, a temporary directory) and, with
the demo principals, makes calls that must succeed and calls that must be refused — wrong
roles, bad bodies, card numbers in paths, reasons and request ids, forged and exhausted grants,
a missing second factor, unknown ids, concurrent approvals and concurrent uses of one grant.
Then it reads the trail as the auditor and holds every authenticated call to its record:
exactly one record under the call's request id, of the expected action, with the outcome and
`code` the caller was answered, and no card number anywhere in it. Prints what each check got;
exits 1 if any failed. Loopback only; every loop is bounded.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

BIN = os.environ.get("BIN", "target/release/strongroom")
PORT = int(os.environ.get("PORT", "18931"))
URL = f"http://127.0.0.1:{PORT}"
FAILED = []
CALLS = []  # (request id, action, status, code or None)


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        FAILED.append(what)


def totp(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def call(method, path, key=None, body=None, headers=None, action=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(URL + path, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, hdrs, text = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, e.headers, e.read().decode()
    answer = json.loads(text) if text else None
    code = answer.get("code") if status >= 400 and isinstance(answer, dict) else None
    if action:
        CALLS.append((hdrs.get("x-request-id"), action, status, code))
    return status, answer


def luhn_ok(d):
    s = 0
    for i, c in enumerate(reversed(d)):
        x = int(c) * (2 if i % 2 else 1)
        s += x - 9 if x > 9 else x
    return s % 10 == 0


def pan(prefix="4"):
    n = uuid.uuid4().int
    while True:
        p = (prefix + str(n))[:15]
        for c in "0123456789":
            if luhn_ok(p + c):
                return p + c
        n += 1


def main():
    tmp = tempfile.mkdtemp(prefix="strongroom-records-")
    data = os.path.join(tmp, "dev")
    log = open(os.path.join(tmp, "dev.log"), "w")
    server = subprocess.Popen([BIN, "dev", "--listen", f"127.0.0.1:{PORT}", "--data-dir", data],
                              stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                if call("GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        creds = json.load(open(os.path.join(data, "dev-credentials.json")))
        k = {p["name"]: p["key"] for p in creds["principals"]}
        secret = {p["name"]: p.get("totp_secret") for p in creds["principals"]}
        run(k, secret)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\n{len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


def run(k, secret):
    card = pan()
    print("1. successes")
    s, t = call("POST", "/v1/tokens", k["checkout"], {"value": card}, action="token.tokenize")
    check(s == 201, f"tokenize: {s}")
    token = t["token"]
    s, _ = call("GET", f"/v1/tokens/{token}", k["checkout"], action="token.lookup")
    check(s == 200, f"lookup: {s}")
    s, g = call("POST", "/v1/access-requests", k["payments"],
                {"any_token": True, "purpose": "payment_authorization", "reason": "charge",
                 "duration_seconds": 60, "max_uses": 5}, action="access_request.create")
    check(s == 201 and g.get("grant"), f"checkout grant: {s}")
    grant = g["grant"]
    s, d = call("POST", "/v1/detokenize", k["payments"], {"tokens": [token]},
                headers={"X-Access-Grant": grant}, action="detokenize")
    check(s == 200 and d["data"][0]["value"] == card, f"detokenize: {s}")

    print("2. refusals, each recorded with the code it was answered")
    refusals = [
        ("POST", "/v1/tokens", k["compliance"], {"value": pan()}, None, "token.tokenize", 403),
        ("POST", "/v1/tokens", k["checkout"], {"value": "4111.1111.1111.1111x"}, None, "token.tokenize", 422),
        ("POST", "/v1/tokens", k["checkout"], {"value": pan(), "cvv": "123"}, None, "token.tokenize", 422),
        ("POST", "/v1/tokens/batch", k["checkout"], {"items": []}, None, "token.tokenize_batch", 422),
        ("GET", f"/v1/tokens/{pan()}", k["checkout"], None, None, "token.lookup", 404),
        ("DELETE", f"/v1/tokens/{token}", k["payments"], None, None, "token.delete", 403),
        ("POST", "/v1/detokenize", k["payments"], {"tokens": [token]}, None, "detokenize", 403),
        ("POST", "/v1/detokenize", k["payments"], {"tokens": [token]},
         {"X-Access-Grant": grant[:-4] + "AAAA"}, "detokenize", 403),
        ("POST", "/v1/detokenize", k["checkout"], {"tokens": [token]},
         {"X-Access-Grant": grant}, "detokenize", 403),
        ("POST", "/v1/access-requests", k["checkout"],
         {"any_token": True, "purpose": "chargeback", "reason": "x", "duration_seconds": 60},
         None, "access_request.create", 403),
        ("POST", "/v1/access-requests", k["alice"],
         {"tokens": [token], "purpose": "chargeback", "reason": f"card {card[:4]}.{card[4:8]}.{card[8:12]}.{card[12:]}",
          "duration_seconds": 60, "totp": totp(secret["alice"])}, None, "access_request.create", 422),
        ("POST", "/v1/access-requests", k["alice"],
         {"tokens": [token], "purpose": "chargeback", "reason": "CB-1", "duration_seconds": 60},
         None, "access_request.create", 403),
        ("POST", f"/v1/access-requests/{uuid.uuid4()}/approve", k["bob"], {}, None,
         "access_request.approve", 404),
        ("POST", f"/v1/access-requests/{card}/deny", k["bob"], {}, None, "access_request.deny", 404),
        ("POST", f"/v1/access-requests/{uuid.uuid4()}/deny", k["checkout"], {}, None,
         "access_request.deny", 403),
        ("POST", f"/v1/grants/{uuid.uuid4()}/revoke", k["payments"], None, None, "grant.revoke", 404),
        ("POST", "/v1/grants/revoke-all", k["payments"], {}, None, "grant.revoke_all", 403),
        ("GET", "/v1/audit", k["checkout"], None, None, "audit.read", 403),
        ("GET", f"/v1/audit?token={card}", k["compliance"], None, None, "audit.read", 422),
    ]
    for method, path, key, body, headers, action, want in refusals:
        s, a = call(method, path, key, body, headers, action=action)
        check(s == want, f"{action} {method} {path[:40]}: {s} {a.get('code') if a else ''} (want {want})")
        check(card not in json.dumps(a), f"  ... the answer does not echo the card")

    print("3. a person's grant: MFA, approval, and twelve concurrent uses of a five-use grant")
    s, r = call("POST", "/v1/access-requests", k["alice"],
                {"tokens": [token], "purpose": "chargeback", "reason": "CB-2", "duration_seconds": 600,
                 "totp": totp(secret["alice"])}, action="access_request.create")
    check(s == 201 and r["status"] == "pending", f"request: {s}")
    rid = r["id"]
    s, a = call("POST", f"/v1/access-requests/{rid}/approve", k["bob"], {}, action="access_request.approve")
    check(s == 403 and a["code"] == "mfa_required", f"approve without a code: {s}")
    code = totp(secret["bob"])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: call("POST", f"/v1/access-requests/{rid}/approve", k["bob"],
                                               {"totp": code}, action="access_request.approve"), range(8)))
    ok = [s for s, _ in results if s == 200]
    check(len(ok) == 1, f"8 concurrent approvals with one code: {sorted(s for s, _ in results)}")
    s, r = call("GET", f"/v1/access-requests/{rid}", k["alice"])
    check(r["status"] == "approved" and r.get("grant"), "approved once, grant for alice")
    alice_grant = r["grant"]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: call("POST", "/v1/detokenize", k["alice"], {"tokens": [token]},
                                               headers={"X-Access-Grant": alice_grant}, action="detokenize"),
                                range(12)))
    statuses = sorted(s for s, _ in results)
    check(statuses.count(200) == 5, f"12 concurrent uses of a 5-use grant: {statuses}")
    check(all(a["code"] == "grant_exhausted" for s, a in results if s != 200), "the rest: grant_exhausted")

    print("4. a request id holding a card number is not kept")
    s, _ = call("GET", f"/v1/tokens/{token}", k["checkout"], headers={"X-Request-Id": card},
                action="token.lookup")
    check(s == 200, f"lookup with a card number as request id: {s}")

    print("5. fail closed, as an outsider sees it")
    import socket
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=20)
    sock.sendall((f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k['checkout']}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {100 << 20}\r\n\r\n").encode())
    started = time.time()
    head = sock.recv(4096).decode(errors="replace")
    sock.close()
    check(head.startswith("HTTP/1.1 413") and "payload_too_large" in head,
          f"100 MiB declared, no body sent: {head.split(chr(13))[0]} after {time.time() - started:.2f}s")
    # Ten wrong codes lock bob's factor; the locked answer is the wrong code's, word for word.
    s_, r2 = call("POST", "/v1/access-requests", k["alice"],
                  {"tokens": [token], "purpose": "chargeback", "reason": "CB-3", "duration_seconds": 60,
                   "totp": totp(secret["alice"], time.time() + 30)}, action="access_request.create")
    check(s_ == 201, f"a request to decide: {s_}")
    answers = []
    for n in range(10):
        wrong = f"{(int(totp(secret['bob'])) + 1 + n) % 1_000_000:06d}"
        s_, a = call("POST", f"/v1/access-requests/{r2['id']}/approve", k["bob"], {"totp": wrong},
                     action="access_request.approve")
        answers.append((s_, {x: y for x, y in a.items() if x != "request_id"}))
    s_, a = call("POST", f"/v1/access-requests/{r2['id']}/approve", k["bob"],
                 {"totp": totp(secret["bob"], time.time() + 60)}, action="access_request.approve")
    locked = (s_, {x: y for x, y in a.items() if x != "request_id"})
    check(locked == answers[-1] and s_ == 403, f"the locked answer is the wrong code's: {locked}")
    s_, ready = call("GET", "/readyz")
    check(s_ == 200, f"ready: {s_}")
    s_, system = call("GET", "/v1/audit?scope=system&limit=500", k["compliance"])
    actions = {e["action"] for e in system["events"]}
    check({"service.start", "policy.load"} <= actions and all(e["tenant"] is None for e in system["events"]),
          f"system scope: {sorted(actions)}")
    s_, own = call("GET", "/v1/audit?limit=500", k["compliance"])
    check(all(e["action"] not in ("service.start", "policy.load") for e in own["events"]),
          "the tenant's scope holds no system records")

    print("6. the trail, against every answer")
    time.sleep(0.5)
    events = []
    cursor = ""
    for _ in range(50):
        s, page = call("GET", f"/v1/audit?limit=500{cursor}", k["compliance"])
        events += page["events"]
        if not page.get("next_cursor"):
            break
        cursor = f"&cursor={page['next_cursor']}"
    by_request = {}
    for e in events:
        by_request.setdefault(e.get("request_id"), []).append(e)
    mismatched = []
    for rid_, action, status, code in CALLS:
        if status == 401 and code == "unauthenticated":
            continue
        found = [e for e in by_request.get(rid_, []) if e["action"] == action]
        want_outcome = "success" if status < 400 else ("error" if status >= 500 else "denied")
        if len(found) != 1 or found[0]["outcome"] != want_outcome or found[0]["code"] != code:
            mismatched.append((action, status, code, [(e["outcome"], e["code"]) for e in found]))
    check(not mismatched, f"{len(CALLS)} calls, each with exactly one record of its outcome and code"
          + (f": {mismatched[:5]}" if mismatched else ""))
    text = json.dumps(events)
    digits = re.sub(r"[^0-9]", "", card)
    check(card not in text and f"{card[:4]}.{card[4:8]}" not in text,
          f"no card number in any of {len(events)} records")
    check(all(digits not in (e.get("request_id") or "") for e in events), "no card number as a request id")
    uses = [e for e in events if e["action"] == "detokenize" and e["outcome"] == "success"]
    check(len(uses) == 6, f"six detokenize successes recorded (1 checkout + 5 of alice's): {len(uses)}")
    locks = [e for e in events if e["action"] == "access_request.approve" and e.get("detail") == "totp_locked"]
    check(len(locks) >= 1, f"the trail knows the factor was locked ({len(locks)} answers while locked)")


if __name__ == "__main__":
    main()
