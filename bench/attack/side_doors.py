#!/usr/bin/env python3
"""Side-door attacks against a running release build, as an outsider with a tokenizer key.

    bench/attack/side_doors.py            # builds nothing: uses target/release/strongroom

Brings up its own database on the local PostgreSQL (see .ci/postgres.sh), three `serve`
instances on loopback and an embedded-store `dev` vault, then tries: the bucket enumeration of
a six_four token (singles, batches, other spellings and formats, delete-and-retry, three
instances in parallel, one instance killed halfway), guessed lookups, a failed-auth flood, card
numbers in free text and in the request id. Prints what each attempt got; exits 1 if any
side door opened. Loopback only; every loop is bounded.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BIN = os.environ.get("BIN", "target/release/strongroom")
ADMIN = os.environ.get("STRONGROOM_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BASE = ADMIN.rsplit("/", 1)[0]
DB = f"strongroom_attack_{os.getpid()}"
FAILED = []


def luhn_ok(d):
    s = 0
    for i, c in enumerate(reversed(d)):
        x = int(c)
        if i % 2 == 1:
            x *= 2
            x -= 9 if x > 9 else 0
        s += x
    return s % 10 == 0


def in_bucket(first6, last4, n):
    for c in range(10):
        p = f"{first6}{n:05d}{c}{last4}"
        if luhn_ok(p):
            return p


def random_pan():
    while True:
        p = "4" + "".join(random.choice("0123456789") for _ in range(15))
        if luhn_ok(p):
            return p


def call(url, method, path, key=None, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, dict(r.headers), json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, dict(e.headers), json.loads(text) if text else None


def check(ok, what):
    print(("  ok    " if ok else "  OPEN  ") + what)
    if not ok:
        FAILED.append(what)


def psql(sql, db=None):
    url = f"{BASE}/{db}" if db else ADMIN
    return subprocess.run(["psql", url, "-qtAc", sql], check=True, capture_output=True, text=True).stdout.strip()


def create(tenant, name, role, env):
    out = subprocess.run([BIN, "principal", "create", "--tenant", tenant, "--name", name, "--role", role, "--json"],
                         env=env, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["key"], j["id"]


def serve(port, env, log):
    p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/readyz", timeout=1)
            return p, url
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


def enumeration(urls, victim_key, attacker_key, other_key, db):
    print("1. enumeration of a six_four token's bucket")
    url = urls[0]
    victim_pan = random_pan()
    _, _, v = call(url, "POST", "/v1/tokens", victim_key, {"value": victim_pan})
    token = v["token"]
    first6, last4 = v["masked"][:6], v["masked"][-4:]
    candidates = [in_bucket(first6, last4, n) for n in range(100_000)]
    random.shuffle(candidates)
    start = time.time()
    returned, created, refused, calls, waited = False, 0, 0, 0, 0
    for i in range(0, len(candidates), 1000):
        while True:
            calls += 1
            st, h, body = call(url, "POST", "/v1/tokens/batch", attacker_key,
                               {"items": [{"value": p} for p in candidates[i:i + 1000]]})
            if st != 429:
                break
            # The principal's rate counts every item: wait as told.
            waited += int(h.get("Retry-After", h.get("retry-after", "1")))
            time.sleep(int(h.get("Retry-After", h.get("retry-after", "1"))))
        for r in body["results"]:
            if r.get("token") == token:
                returned = True
            if r.get("created"):
                created += 1
            if "error" in r:
                refused += 1
    took = time.time() - start
    print(f"     {len(candidates)} guesses in {calls} batch calls ({waited} s told to wait by the "
          f"rate limit), {took:.1f} s: {created} created, {refused} refused")
    check(not returned, "the victim's token never came back from 100,000 guesses")
    stored = int(psql(f"select count(*) from tokens where masked_pan = '{first6}******{last4}'", db))
    check(stored <= 20, f"tokens stored in the bucket: {stored} (budget 20, the victim's included)")
    # Other spellings and formats of the victim's card are the same bucket.
    spaced = " ".join(victim_pan[i:i + 4] for i in range(0, 16, 4))
    dashed = "-".join(victim_pan[i:i + 4] for i in range(0, 16, 4))
    answers = []
    for body in [{"value": victim_pan}, {"value": spaced}, {"value": dashed},
                 {"value": victim_pan, "format": "last_four"}, {"value": victim_pan, "format": "opaque"},
                 {"value": victim_pan, "format": "length_preserving"}, {"value": candidates[-1]}]:
        st, h, b = call(url, "POST", "/v1/tokens", attacker_key, body)
        b = {k: v for k, v in (b or {}).items() if k != "request_id"}
        answers.append((st, b.get("code"), b.get("detail")))
    check(len(set(answers)) == 1 and answers[0][0] == 429,
          f"victim's card in 6 spellings/formats and a new card: one answer {answers[0][:2]}")
    st, _, _ = call(url, "POST", "/v1/tokens", other_key, {"value": victim_pan})
    check(st == 201, f"another tenant's tokenize of the same digits is its own: {st}")
    n = int(psql("select count(*) from audit_events where action = 'tokenize.enumeration_suspected'", db))
    check(n == 1, f"tokenize.enumeration_suspected records: {n}")
    leaked = int(psql(f"select count(*) from audit_events where detail like '%{victim_pan}%'", db))
    check(leaked == 0, "the card number is in no audit detail")


def delete_and_retry(url, attacker_key, db):
    print("2. tokenize, delete, tokenize again: deleting does not refill the budget")
    first6, last4 = "542418", "0011"
    made = 0
    for n in range(40):
        st, _, b = call(url, "POST", "/v1/tokens", attacker_key, {"value": in_bucket(first6, last4, n)})
        if st == 201:
            made += 1
            call(url, "DELETE", f"/v1/tokens/{b['token']}", attacker_key)
    check(made == 20, f"new cards accepted while deleting each: {made}")


def parallel_instances(urls, attacker_key, db, servers):
    print("3. three instances in parallel on one bucket, one killed halfway")
    first6, last4 = "601100", "0004"
    pans = [in_bucket(first6, last4, n) for n in range(300)]

    def one(i):
        st, _, _ = call(urls[i % 3], "POST", "/v1/tokens", attacker_key, {"value": pans[i]})
        return st

    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(one, i) for i in range(150)]
        time.sleep(0.05)
        servers[2].send_signal(signal.SIGKILL)
        statuses = []
        for f in futures:
            try:
                statuses.append(f.result())
            except Exception:
                statuses.append("conn")
    stored = int(psql(f"select count(*) from tokens where masked_pan = '{first6}******{last4}'", db))
    created = statuses.count(201)
    print(f"     {created} created, {statuses.count(429)} refused, "
          f"{len([s for s in statuses if s not in (201, 429)])} lost with the killed instance")
    check(stored <= 20, f"stored in the bucket across 3 instances and a kill -9: {stored}")
    check(created <= stored, "no created answer without its row")


def guessing(url, key, db):
    print("4. guessed lookups")
    statuses = [call(url, "GET", f"/v1/tokens/{random_pan().replace('4', '9', 1)}", key)[0] for _ in range(60)]
    check(statuses[:51].count(404) == 51 and statuses[-1] == 429,
          f"404 ×{statuses.count(404)}, then 429 ×{statuses.count(429)}")
    n = int(psql("select count(*) from audit_events where action = 'token.lookup_suspicious'", db))
    check(n == 1, f"token.lookup_suspicious records: {n}")


def auth_flood(url, db):
    print("5. failed-authentication flood from one address")
    before = int(psql("select count(*) from audit_events where action = 'auth.failure'", db))
    statuses = [call(url, "GET", "/v1/tokens/4111111111111111", f"sr_guess_{i}")[0] for i in range(200)]
    after = int(psql("select count(*) from audit_events where action = 'auth.failure'", db))
    check(statuses.count(401) == 20 and statuses.count(429) == 180,
          f"401 ×{statuses.count(401)}, 429 ×{statuses.count(429)}")
    check(after - before <= 2, f"audit records for 200 failures (aggregate comes when the minute ends): {after - before}")


def free_text(url, key, db):
    print("6. card numbers in free text")
    pan = "4111111111111111"
    forms = ["4111.1111.1111.1111", "4111_1111_1111_1111", "4111/1111/1111/1111", f"{pan} 1225",
             f"{pan}-01", f"1 {pan}", f"{pan}/12/25", "４１１１１１１１１１１１１１１１", "4111\u20091111\u20091111\u20091111"]
    for form in forms:
        st, _, b = call(url, "POST", "/v1/tokens", key, {"value": random_pan(), "metadata": {"note": f"card {form} ok"}})
        check(st == 422 and b["code"] == "sensitive_data_refused" and "1111" not in b["detail"],
              f"metadata {form!r}: {st} {b.get('code')}")
    for k in ["cvcNumber", "trackData2", "pinCode", "card_cvv", "CardVerificationValue"]:
        st, _, b = call(url, "POST", "/v1/tokens", key, {"value": random_pan(), "metadata": {k: "x"}})
        check(st == 422, f"metadata key {k}: {st}")
    st, h, _ = call(url, "GET", "/healthz", headers={"X-Request-Id": "req.4111.1111.1111.1111"})
    check("4111" not in h.get("x-request-id", h.get("X-Request-Id", "")), "a request id holding a card is replaced")
    stored = int(psql(f"select count(*) from tokens where metadata::text like '%1111%1111%'", db))
    check(stored == 0, "no metadata stored with the card")


def embedded(tmp):
    print("7. the embedded store (strongroom dev)")
    data = os.path.join(tmp, "dev")
    log = open(os.path.join(tmp, "dev.log"), "w")
    p = subprocess.Popen([BIN, "dev", "--listen", "127.0.0.1:18911", "--data-dir", data], stdout=log, stderr=log)
    url = "http://127.0.0.1:18911"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        creds = json.load(open(os.path.join(data, "dev-credentials.json")))
        key = next(pr["key"] for pr in creds["principals"] if "tokenizer" in pr["roles"])
        pans = [in_bucket("371449", "8431", n) for n in range(500)]
        created = 0
        for i in range(0, 500, 100):
            _, _, b = call(url, "POST", "/v1/tokens/batch", key, {"items": [{"value": x} for x in pans[i:i + 100]]})
            created += sum(1 for r in b["results"] if r.get("created"))
        for x in pans[:30]:
            st, _, _ = call(url, "POST", "/v1/tokens", key, {"value": x})
            created += 1 if st == 201 else 0
        check(created <= 20, f"new cards accepted in one bucket on SQLite: {created}")
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)


def main():
    random.seed()
    tmp = tempfile.mkdtemp()
    psql(f"create database {DB}")
    env = dict(os.environ, DATABASE_URL=f"{BASE}/{DB}", STRONGROOM_LOG="warn")
    env["STRONGROOM_MASTER_KEY"] = subprocess.run([BIN, "keygen"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
    victim, _ = create("acme", "checkout", "tokenizer", env)
    attacker, _ = create("acme", "mallory", "tokenizer", env)
    guesser, _ = create("acme", "guesser", "tokenizer", env)
    other, _ = create("globex", "checkout", "tokenizer", env)
    log = open(os.path.join(tmp, "servers.log"), "w")
    servers, urls = [], []
    for port in (18901, 18902, 18903):
        p, u = serve(port, env, log)
        servers.append(p)
        urls.append(u)
    try:
        enumeration(urls, victim, attacker, other, DB)
        delete_and_retry(urls[1], attacker, DB)
        parallel_instances(urls, attacker, DB, servers)
        guessing(urls[0], guesser, DB)
        auth_flood(urls[1], DB)
        free_text(urls[0], victim, DB)
        embedded(tmp)
    finally:
        for p in servers:
            p.kill()
        psql(f"drop database if exists {DB} with (force)")
    print(f"\n{len(FAILED)} side doors open" + (": " + "; ".join(FAILED) if FAILED else ""))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
