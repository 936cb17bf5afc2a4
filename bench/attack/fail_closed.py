#!/usr/bin/env python3
"""Fail closed, as an outsider tries it: can the vault be made to succeed without evidence?

    bench/attack/fail_closed.py            # uses target/release/strongroom (BIN= for another)

Brings up its own database on the local PostgreSQL (STRONGROOM_TEST_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/postgres) and `serve` instances on loopback, then:

 1. makes the audit trail refuse inserts (a trigger, as the superuser) and sends every audited
    write — tokenize new and known, a batch, delete, detokenize, revoke, an access request, an
    approval, the re-tokenize of an expired card — expecting 503 with Retry-After and no row
    changed; /readyz must say so, and recover when the trigger goes;
 2. floods one instance with 32 threads and kill -9s it mid-flood: every acknowledged token is
    stored, every stored token has exactly one tokenize record;
 3. terminates the vault's database connections twice mid-flood (tokenize + detokenize): no
    500, every 503 has Retry-After, no 503'd call left a success record, the vault recovers;
 4. stalls the database (ACCESS EXCLUSIVE on tokens, then on audit_events) under a 1 s request
    timeout: stored rows equal acknowledged ones;
 5. tokenizes one new card 32 times at once on two instances: one token, one "created";
 7-9. an attacker's extras: a batch that is partly refused (bad items, a bucket overrun), an
    expired card tokenized again concurrently, batches repeating a card in reversed orders on
    two instances;
 6. stops everything with SIGTERM and runs `strongroom audit verify` with the checkpoint file.

Every call carries its own X-Request-Id, so each answer is held to its record: a 2xx to exactly
one success record naming the tokens it answered, a 503 to none. Prints ok/FAIL per check and a
summary; exits 1 on any FAIL. Loopback only; every loop and wait is bounded.
"""
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

BIN = os.environ.get("BIN", "target/release/strongroom")
ADMIN = os.environ.get("STRONGROOM_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BASE = ADMIN.rsplit("/", 1)[0]
DB = f"strongroom_failclosed_{os.getpid()}"
FAILED = []
SUMMARY = []
TIMES = {}  # request id -> (sent, answered), UTC text, for evidence
TOKENIZE_ACTIONS = "('token.tokenize', 'token.tokenize_batch')"
POLICIES = """
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 600
max_uses = 1000000
any_token = true

[[policy]]
name = "support-chargeback"
roles = ["requester"]
purposes = ["chargeback"]
approvals = 1
max_duration_seconds = 3600
max_uses = 5
max_tokens = 5
source_cidrs = ["127.0.0.0/8", "::1/128"]
"""


# ---------------------------------------------------------------- helpers (as in side_doors.py)

def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def note(what):
    print("        " + what, flush=True)


def luhn_ok(d):
    s = 0
    for i, c in enumerate(reversed(d)):
        x = int(c) * (2 if i % 2 else 1)
        s += x - 9 if x > 9 else x
    return s % 10 == 0


def with_check_digit(body):
    for c in "0123456789":
        if luhn_ok(body + c):
            return body + c


def in_bucket(first6, last4, n):
    for c in range(10):
        p = f"{first6}{n:05d}{c}{last4}"
        if luhn_ok(p):
            return p


_SEEN = set()
_SEEN_LOCK = threading.Lock()


def new_pan(rng=random):
    """A Luhn-valid 16-digit card never used before in this run, its bucket (first six, last
    four) random too, so the enumeration guard never counts two of them together."""
    while True:
        p = with_check_digit(rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(14)))
        with _SEEN_LOCK:
            if p not in _SEEN:
                _SEEN.add(p)
                return p


def totp(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def call(url, method, path, key=None, body=None, headers=None, rid=None, timeout=30):
    """(status, lower-cased headers, parsed body). status is "conn" when no answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if rid:
        req.add_header("X-Request-Id", rid)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, text = r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, e.headers, e.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return "conn", {}, {"error": repr(e)}
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = {"raw": text[:200]}
    return status, {k.lower(): v for k, v in hdrs.items()}, answer


def utc(at=None):
    at = time.time() if at is None else at
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}"


def code_of(answer):
    return answer.get("code") if isinstance(answer, dict) else None


def psql(sql, db=None):
    url = f"{BASE}/{db}" if db else ADMIN
    return subprocess.run(["psql", url, "-qtAc", sql], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


def q(sql):
    return psql(sql, DB)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def create(tenant, name, roles, env, totp_=False):
    args = [BIN, "principal", "create", "--tenant", tenant, "--name", name, "--json"]
    for r in roles:
        args += ["--role", r]
    if totp_:
        args.append("--totp")
    j = json.loads(subprocess.run(args, env=env, check=True, capture_output=True, text=True, timeout=60).stdout)
    return j


class Server:
    def __init__(self, name, env, log, extra=()):
        self.name, self.env, self.log, self.extra = name, env, log, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{self.port}", *self.extra],
                                     env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server {self.name} exited with {self.proc.returncode}")
            st, _, _ = call(self.url, "GET", "/readyz", timeout=2)
            if st == 200:
                return
            time.sleep(0.1)
        raise SystemExit(f"server {self.name} did not become ready")

    def stop(self):
        """SIGTERM and wait: the graceful stop writes a last checkpoint. Returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                return "killed after 40 s"
        return self.proc.returncode if self.proc else None


def snapshot():
    return json.loads(q("""select json_build_object(
        'tokens', (select count(*) from tokens),
        'destroyed', (select count(*) from tokens where destroyed_at is not null),
        'uses', (select coalesce(sum(uses), 0) from grants),
        'grants', (select count(*) from grants),
        'revoked', (select count(*) from grants where revoked_at is not null),
        'requests', (select count(*) from access_requests),
        'approved', (select count(*) from access_requests where status = 'approved'),
        'decisions', (select count(*) from access_decisions),
        'buckets', (select count(*) from tokenize_buckets),
        'records', (select count(*) from audit_events))"""))


def db_now():
    return q("select now()::text")


def records_for(prefix):
    """Audit records whose request id starts with prefix, by request id."""
    rows = json.loads(q(f"""select coalesce(json_agg(json_build_object(
        'rid', request_id, 'action', action, 'outcome', outcome, 'code', code, 'detail', detail,
        'tokens', tokens, 'id', id, 'seq', seq, 'at', to_char(at at time zone 'utc', 'HH24:MI:SS.MS'),
        'created', (select to_char(min(t.created_at) at time zone 'utc', 'HH24:MI:SS.MS') from tokens t
                    where t.tenant_id = audit_events.tenant_id and t.token = any(audit_events.tokens)))), '[]') from audit_events where request_id like '{prefix}%'"""))
    out = {}
    for r in rows:
        out.setdefault(r["rid"], []).append(r)
    return out


def answered_tokens(kind, status, answer):
    if not isinstance(answer, dict):
        return []
    if kind == "tokenize" and "token" in answer:
        return [answer["token"]]
    if kind == "batch":
        return [r["token"] for r in answer.get("results", []) if isinstance(r, dict) and "token" in r]
    return []


ACTION = {"tokenize": "token.tokenize", "batch": "token.tokenize_batch", "detokenize": "detokenize",
          "delete": "token.delete", "revoke": "grant.revoke", "request": "access_request.create",
          "approve": "access_request.approve"}


def hold_to_records(prefix, answers, label):
    """answers: [(rid, kind, status, answer)]. A 2xx has exactly one success record of its
    action naming the tokens it answered; a 503 (or any refusal) has no success record."""
    recs = records_for(prefix)
    bad_ok, bad_503, mismatched = [], [], []
    for rid, kind, status, answer in answers:
        mine = [r for r in recs.get(rid, []) if r["action"] == ACTION[kind] and r["outcome"] == "success"]
        if isinstance(status, int) and 200 <= status < 300:
            if len(mine) != 1:
                bad_ok.append((rid, kind, status, len(mine)))
                continue
            want = sorted(answered_tokens(kind, status, answer))
            if kind in ("tokenize", "batch") and sorted(mine[0]["tokens"]) != want:
                mismatched.append((rid, kind, want[:3], mine[0]["tokens"][:3]))
            if kind == "tokenize" and mine[0]["detail"] != ("created" if status == 201 else "existing"):
                mismatched.append((rid, kind, status, mine[0]["detail"]))
        elif status != "conn" and mine:
            sent, answered = TIMES.get(rid, ("?", "?"))
            bad_503.append({"rid": rid, "kind": kind, "answer": f"{status} {code_of(answer)}",
                            "sent": sent, "answered": answered,
                            "records": [{x: r[x] for x in ("id", "seq", "at", "detail", "tokens", "created")}
                                        for r in mine]})
    n_ok = sum(1 for a in answers if isinstance(a[2], int) and 200 <= a[2] < 300)
    n_no = sum(1 for a in answers if isinstance(a[2], int) and a[2] >= 400)
    check(not bad_ok, f"{label}: each of {n_ok} 2xx answers has exactly one success record"
          + (f" — not so for {len(bad_ok)}, e.g. {bad_ok[:3]}" if bad_ok else ""))
    check(not bad_503, f"{label}: none of {n_no} refused/503 answers left a success record"
          + (f" — {len(bad_503)} did, e.g. {bad_503[:3]}" if bad_503 else ""))
    check(not mismatched, f"{label}: every tokenize record names exactly the tokens answered (and created/existing)"
          + (f" — {len(mismatched)} differ, e.g. {mismatched[:3]}" if mismatched else ""))


def orphan_checks(label, since=None):
    """Every token row has a success tokenize record; every record's token has a row; no token
    is called created by two single records; and (since) each row created since then is named by
    exactly one tokenize record (every card sent once)."""
    orphans = q(f"""select coalesce(json_agg(t.token), '[]') from tokens t where not exists (
        select 1 from audit_events e where e.tenant_id = t.tenant_id and e.action in {TOKENIZE_ACTIONS}
          and e.outcome = 'success' and e.tokens @> array[t.token])""")
    orphans = json.loads(orphans)
    phantoms = json.loads(q(f"""select coalesce(json_agg(x.tok), '[]') from audit_events e
        cross join lateral unnest(e.tokens) as x(tok)
        where e.action in {TOKENIZE_ACTIONS} and e.outcome = 'success'
          and not exists (select 1 from tokens t where t.tenant_id = e.tenant_id and t.token = x.tok)"""))
    twice = json.loads(q("""select coalesce(json_agg(tok), '[]') from (select x.tok from audit_events e
        cross join lateral unnest(e.tokens) as x(tok)
        where e.action = 'token.tokenize' and e.outcome = 'success' and e.detail = 'created'
        group by x.tok having count(*) > 1) s"""))
    rows = int(q("select count(*) from tokens"))
    check(not orphans, f"{label}: orphan token rows (no tokenize record): {len(orphans)} of {rows}"
          + (f", e.g. {orphans[:3]}" if orphans else ""))
    check(not phantoms, f"{label}: tokens named by a success record with no row: {len(phantoms)}"
          + (f", e.g. {phantoms[:3]}" if phantoms else ""))
    check(not twice, f"{label}: tokens that two single records call created: {len(twice)}"
          + (f", e.g. {twice[:3]}" if twice else ""))
    if since:
        odd = json.loads(q(f"""select coalesce(json_agg(json_build_object('token', t.token, 'records', n)), '[]')
            from (select t.token, (select count(*) from audit_events e where e.tenant_id = t.tenant_id
                    and e.action in {TOKENIZE_ACTIONS} and e.tokens @> array[t.token]) as n
                  from tokens t where t.created_at >= '{since}') t where n <> 1"""))
        check(not odd, f"{label}: rows created in the scenario named by exactly one tokenize record"
              + (f" — {len(odd)} are not, e.g. {odd[:3]}" if odd else ""))
    return len(orphans)


def install_refusal():
    for sql in ["create or replace function refuse_audit() returns trigger language plpgsql as "
                "$$ begin raise exception 'audit disk full'; end; $$",
                "create trigger refuse_audit before insert on audit_events "
                "for each row execute function refuse_audit()"]:
        q(sql)


def drop_refusal():
    q("drop trigger if exists refuse_audit on audit_events")


def wait_ready(url, want, seconds):
    """Polls /readyz until it answers `want`; (took, status, body) of the last answer."""
    start = time.time()
    st, body = None, None
    while time.time() - start < seconds:
        st, _, body = call(url, "GET", "/readyz", timeout=3)
        if st == want:
            break
        time.sleep(0.1)
    return time.time() - start, st, body


def flood(label, prefix, seconds, threads, pick, events=()):
    """`threads` workers call `pick(n, rng)` -> (kind, server, method, path, key, body, headers)
    until `seconds` pass; `events` are (at seconds, function) run meanwhile. Returns
    [(rid, kind, status, answer, headers)]."""
    answers = []
    lock = threading.Lock()
    counter = itertools.count()
    stop = time.time() + seconds

    def worker():
        rng = random.Random()
        while time.time() < stop:
            n = next(counter)
            rid = f"{prefix}-{n}"
            kind, url, method, path, key, body, headers = pick(n, rng)
            sent = utc()
            st, h, a = call(url, method, path, key, body, headers, rid=rid, timeout=20)
            TIMES[rid] = (sent, utc())
            with lock:
                answers.append((rid, kind, st, a, h))
            if st == "conn":
                time.sleep(0.05)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for at, fn in events:
        time.sleep(max(0, t0 + at - time.time()))
        fn()
    for t in ts:
        t.join(timeout=seconds + 40)
    check(not any(t.is_alive() for t in ts), f"{label}: every worker finished")
    return answers


def tally(answers):
    c = Counter()
    for _, kind, st, a, _h in answers:
        c[(kind, st if st == "conn" or st < 500 else f"{st} {code_of(a)}")] += 1
    return dict(sorted(c.items(), key=str))


def statuses(answers):
    return Counter(a[2] for a in answers)


def check_5xx(label, answers):
    c = statuses(answers)
    fives = [(rid, kind, st, code_of(a)) for rid, kind, st, a, _ in answers
             if isinstance(st, int) and st >= 500 and st != 503]
    check(not fives, f"{label}: no 5xx but 503: {len(fives)}" + (f", e.g. {fives[:3]}" if fives else ""))
    no_retry = [(rid, code_of(a)) for rid, _, st, a, h in answers if st == 503 and "retry-after" not in h]
    check(not no_retry, f"{label}: every 503 ({c.get(503, 0)}) carries Retry-After"
          + (f" — {len(no_retry)} do not, e.g. {no_retry[:3]}" if no_retry else ""))
    codes = Counter(code_of(a) for _, _, st, a, _ in answers if st == 503)
    odd = {k: v for k, v in codes.items() if k not in ("audit_unavailable", "database_unavailable", "timeout", "overloaded")}
    check(not odd, f"{label}: 503 codes {dict(codes)}")
    return c


# ---------------------------------------------------------------- the scenarios

def scenario_1(a, k, principals, known_pan):
    print("1. the audit trail refuses inserts")
    checkout, payments = k["checkout"], k["payments"]
    # What the refused calls will act on, made while the trail still works.
    _, _, t = call(a.url, "POST", "/v1/tokens", checkout, {"value": known_pan})
    known = t["token"]
    del_pan = new_pan()
    _, _, t = call(a.url, "POST", "/v1/tokens", checkout, {"value": del_pan})
    to_delete = t["token"]
    st, _, g = call(a.url, "POST", "/v1/access-requests", payments,
                    {"any_token": True, "purpose": "payment_authorization", "reason": "fail closed",
                     "duration_seconds": 600, "max_uses": 100})
    check(st == 201 and g.get("grant"), f"a payments grant before the trouble: {st}")
    jwt, jti = g["grant"], g.get("grant_jti")
    st, _, d = call(a.url, "POST", "/v1/detokenize", payments, {"tokens": [known]}, {"X-Access-Grant": jwt})
    check(st == 200, f"detokenize before the trouble: {st}")
    st, _, r = call(a.url, "POST", "/v1/access-requests", k["alice"],
                    {"tokens": [known], "purpose": "chargeback", "reason": "CB-1", "duration_seconds": 600,
                     "totp": totp(principals["alice"]["totp_secret"])})
    check(st == 201 and r.get("status") == "pending", f"alice's pending request: {st}")
    pending = r["id"]
    bob_id = principals["bob"]["id"]
    step_before = q(f"select coalesce(totp_last_step::text, 'none') from principals where id = '{bob_id}'")
    exp_destroyed_before = q(f"select destroyed_at is not null from tokens where token = '{k['expired_token']}'")
    if exp_destroyed_before == "t":
        note("(the housekeeping purged the expired token already: check 8's first half proves less)")
    before = snapshot()

    install_refusal()
    took, st, body = wait_ready(a.url, 503, 10)
    check(st == 503 and took <= 5.5 and (body or {}).get("reason") == "audit_trail",
          f"/readyz turns 503 in {took:.1f} s: {st} {code_of(body)} reason={(body or {}).get('reason')}")
    new1, batch = new_pan(), [new_pan() for _ in range(20)]
    attempts = [
        ("tokenize", "POST", "/v1/tokens", checkout, {"value": new1}, None),
        ("tokenize", "POST", "/v1/tokens", checkout, {"value": known_pan}, None),
        ("batch", "POST", "/v1/tokens/batch", checkout, {"items": [{"value": p} for p in batch]}, None),
        ("delete", "DELETE", f"/v1/tokens/{to_delete}", checkout, None, None),
        ("detokenize", "POST", "/v1/detokenize", payments, {"tokens": [known]}, {"X-Access-Grant": jwt}),
        ("revoke", "POST", f"/v1/grants/{jti}/revoke", payments, None, None),
        ("request", "POST", "/v1/access-requests", payments,
         {"any_token": True, "purpose": "payment_authorization", "reason": "during", "duration_seconds": 60}, None),
        ("approve", "POST", f"/v1/access-requests/{pending}/approve", k["bob"],
         {"totp": totp(principals["bob"]["totp_secret"]), "comment": "ok"}, None),
    ]
    answers = []
    for i, (kind, method, path, key, body, headers) in enumerate(attempts):
        rid = f"fc1-refused-{i}"
        st, h, ans = call(a.url, method, path, key, body, headers, rid=rid)
        answers.append((rid, kind, st, ans))
        leaked = known_pan in json.dumps(ans)
        check(st == 503 and "retry-after" in h and code_of(ans) in ("audit_unavailable", "database_unavailable", "timeout")
              and not leaked,
              f"{kind} {method} {path[:32]}: {st} {code_of(ans)} Retry-After={h.get('retry-after')}"
              + (" — THE CARD NUMBER LEFT" if leaked else ""))
    # The expired card, tokenized again while the trail refuses (extra check 8, first half):
    # replacing it must not destroy the old token without the new one and both records.
    exp_pan, exp_token = k["expired_pan"], k["expired_token"]
    st, h, ans = call(a.url, "POST", "/v1/tokens", checkout, {"value": exp_pan}, rid="fc1-refused-expired")
    answers.append(("fc1-refused-expired", "tokenize", st, ans))
    destroyed = q(f"select destroyed_at is not null from tokens where token = '{exp_token}'")
    check(st == 503 and (destroyed == "f" or exp_destroyed_before == "t"),
          f"an expired card tokenized again: {st} {code_of(ans)}; its old token destroyed: {destroyed} "
          f"(before the trouble: {exp_destroyed_before})")
    after = snapshot()
    changed = {x: (before[x], after[x]) for x in before if before[x] != after[x]}
    check(not changed, f"nothing stored while the trail refused: {changed or 'tokens, uses, destroyed, revoked, requests, decisions, records unchanged'}")
    step_after = q(f"select coalesce(totp_last_step::text, 'none') from principals where id = '{bob_id}'")
    if step_after != step_before:
        note(f"(bob's TOTP step counter moved {step_before} -> {step_after} on the 503'd approval: "
             "the code is spent though the approval was not made)")
    hold_to_records("fc1-refused", answers, "refused calls")
    SUMMARY.append(f"1: refused calls {Counter(a[2] for a in answers)}; readyz 503 after {took:.1f} s; "
                   f"rows changed {changed or 'none'}")

    drop_refusal()
    took2, st, body = wait_ready(a.url, 200, 10)
    check(st == 200 and took2 <= 5.5, f"/readyz 200 again {took2:.1f} s after the trigger is dropped: {st}")
    again = []
    results = {}
    for i, (kind, method, path, key, body, headers) in enumerate(attempts):
        if kind == "approve":
            body = {"totp": totp(principals["bob"]["totp_secret"], time.time() + 30), "comment": "ok"}
        rid = f"fc1-again-{i}"
        st, h, ans = call(a.url, method, path, key, body, headers, rid=rid)
        again.append((rid, kind, st, ans))
        results[i] = (st, ans)
    want = [201, 200, 200, 204, 200, 200, 201, 200]
    got = [results[i][0] for i in range(len(attempts))]
    ok_codes = all(g == w or (w == 204 and g == 200) or (w == 200 and i == 5 and g == 204)
                   for i, (g, w) in enumerate(zip(got, want)))
    check(ok_codes, f"the same calls succeed once the trail takes records: {got}"
          + ("" if ok_codes else f" {[code_of(results[i][1]) for i in range(len(attempts))]}"))
    b = results[2][1] or {}
    created = sum(1 for r in b.get("results", []) if r.get("created"))
    check(created == 20, f"the batch of 20 creates 20 now: {created}")
    d = results[4][1] or {}
    check(results[4][0] == 200 and d.get("data", [{}])[0].get("value") == known_pan, "detokenize reveals the card now")
    final = snapshot()
    delta = {x: final[x] - after[x] for x in final}
    check(delta["tokens"] == 21 and delta["uses"] == 1 and delta["destroyed"] == 1 and delta["revoked"] == 1
          and delta["decisions"] == 1, f"rows after the retries: {delta}")
    hold_to_records("fc1-again", again, "retried calls")
    SUMMARY.append(f"1: retried calls {got}; readyz 200 after {took2:.1f} s")


def scenario_2(b, k):
    print("2. flood one instance, kill -9 it mid-flood, restart")
    since = db_now()
    key = k["checkout"]

    def pick(n, rng):
        if rng.random() < 0.6:
            return "tokenize", b.url, "POST", "/v1/tokens", key, {"value": new_pan(rng)}, None
        return ("batch", b.url, "POST", "/v1/tokens/batch", key,
                {"items": [{"value": new_pan(rng)} for _ in range(rng.randint(2, 5))]}, None)

    answers = flood("flood+kill", "fc2", 3.0, 32, pick, events=[(2.0, lambda: b.proc.send_signal(signal.SIGKILL))])
    b.proc.wait(timeout=10)
    acked = [t for _, kind, st, a, _ in answers if st in (200, 201) for t in answered_tokens(kind, st, a)]
    c = check_5xx("flood+kill", answers)
    print(f"        answers: {tally(answers)}")
    b.start()
    stored = set(json.loads(q(f"select coalesce(json_agg(token), '[]') from tokens where token = any(array{acked or ['x']}::text[])")))
    lost = [t for t in acked if t not in stored]
    check(acked and not lost, f"every acknowledged token ({len(acked)}) is stored: missing {len(lost)}")
    rows = int(q(f"select count(*) from tokens where created_at >= '{since}'"))
    note(f"rows created in the flood: {rows}; acknowledged tokens: {len(acked)} "
         f"(the rest: calls cut off by the kill, each must still have its record)")
    hold_to_records("fc2", [(r, kd, s, a) for r, kd, s, a, _ in answers], "flood+kill")
    n = orphan_checks("after kill -9", since)
    SUMMARY.append(f"2: statuses {dict(c)}; acked tokens {len(acked)}, rows {rows}, lost {len(lost)}, orphans {n}")
    return acked


def scenario_3(a, k, pool_tokens, idle):
    print("3. database connections terminated twice mid-flood (tokenize + detokenize)")
    since = db_now()
    uses_before = int(q("select coalesce(sum(uses), 0) from grants"))
    st, _, g = call(a.url, "POST", "/v1/access-requests", k["payments"],
                    {"any_token": True, "purpose": "payment_authorization", "reason": "flood",
                     "duration_seconds": 600, "max_uses": 1000000})
    jwt = g["grant"]
    terminated = []

    def terminate():
        terminated.append(q(f"select count(pg_terminate_backend(pid)) from pg_stat_activity "
                            f"where datname = '{DB}' and pid <> pg_backend_pid()"))

    def pick(n, rng):
        r = rng.random()
        if r < 0.4:
            return "tokenize", a.url, "POST", "/v1/tokens", k["checkout"], {"value": new_pan(rng)}, None
        if r < 0.55:
            return ("batch", a.url, "POST", "/v1/tokens/batch", k["checkout"],
                    {"items": [{"value": new_pan(rng)} for _ in range(rng.randint(2, 4))]}, None)
        return ("detokenize", a.url, "POST", "/v1/detokenize", k["payments"],
                {"tokens": rng.sample(pool_tokens, min(2, len(pool_tokens)))}, {"X-Access-Grant": jwt})

    answers = flood("terminate", "fc3", 4.0, 32, pick, events=[(1.0, terminate), (2.0, terminate)])
    note(f"backends terminated: {terminated}")
    c = check_5xx("terminate", answers)
    print(f"        answers: {tally(answers)}")
    hold_to_records("fc3", [(r, kd, s, x) for r, kd, s, x, _ in answers], "terminate")
    revealed = sum(1 for _, kind, st, _, _ in answers if kind == "detokenize" and st == 200)
    uses = int(q("select coalesce(sum(uses), 0) from grants")) - uses_before
    recorded = int(q(f"select count(*) from audit_events where action = 'detokenize' and outcome = 'success' "
                     f"and request_id like 'fc3-%'"))
    check(uses == revealed == recorded,
          f"grant uses taken {uses} == detokenize 200 answers {revealed} == success records {recorded}")
    n = orphan_checks("after terminations", since)
    # Serves again without a restart.
    took, st, _ = wait_ready(a.url, 200, 10)
    check(st == 200, f"/readyz 200 {took:.1f} s after: {st}")
    st1, _, t = call(a.url, "POST", "/v1/tokens", k["checkout"], {"value": new_pan()})
    st2, _, _ = call(a.url, "POST", "/v1/detokenize", k["payments"], {"tokens": [t.get("token", "x")] if isinstance(t, dict) else ["x"]},
                     {"X-Access-Grant": jwt})
    check(st1 == 201 and st2 == 200, f"the vault serves again without a restart: tokenize {st1}, detokenize {st2}")
    # Instance B sat idle while its connections were terminated too: once it says ready, its
    # first audited write should go through.
    took, ready, _ = wait_ready(idle.url, 200, 10)
    tries = []
    for i in range(4):
        st, h, x = call(idle.url, "POST", "/v1/tokens", k["checkout"], {"value": new_pan()}, rid=f"fc3-idle-{i}")
        tries.append(f"{st} {code_of(x) or ''}".strip())
        if st == 201:
            break
        time.sleep(0.2)
    check(ready == 200 and tries[0] == "201",
          f"the idle instance B after the terminations: /readyz {ready}, then tokenize {tries}")
    SUMMARY.append(f"3: statuses {dict(c)}; uses {uses}/answers {revealed}/records {recorded}; orphans {n}")


def scenario_4(c, k, table):
    print(f"4. a stall: ACCESS EXCLUSIVE on {table} for 3 s, request timeout 1 s, 8 threads")
    since = db_now()
    holder = []

    def lock():
        holder.append(utc())
        holder.append(subprocess.Popen(
            ["psql", f"{BASE}/{DB}", "-qtA", "-c", f"begin; lock table {table} in access exclusive mode; "
             "select to_char(clock_timestamp() at time zone 'utc', 'HH24:MI:SS.MS'); select pg_sleep(3); "
             "select to_char(clock_timestamp() at time zone 'utc', 'HH24:MI:SS.MS'); commit;"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))

    def pick(n, rng):
        return "tokenize", c.url, "POST", "/v1/tokens", k["checkout"], {"value": new_pan(rng)}, None

    answers = flood(f"stall {table}", f"fc4{table[0]}", 6.0, 8, pick, events=[(1.0, lock)])
    out, err = holder[1].communicate(timeout=20)
    held = [x for x in out.decode().split() if ":" in x]
    err = err.decode().strip()
    note(f"lock asked for at {holder[0]} UTC, held from {held[:1]} to {held[1:2]} (database clock, UTC); "
         "with a 3 s lock and a 1 s timeout, the calls of the third 1 s round reach their deadline as it is released")
    if err:
        note(f"lock holder said: {err[:200]}")
    cnt = check_5xx(f"stall {table}", answers)
    print(f"        answers: {tally(answers)}")
    acked = [t for _, kind, st, a, _ in answers if st in (200, 201) for t in answered_tokens(kind, st, a)]
    rows = int(q(f"select count(*) from tokens where created_at >= '{since}'"))
    check(rows == len(acked), f"rows stored {rows} == acknowledged tokens {len(acked)}")
    hold_to_records(f"fc4{table[0]}", [(r, kd, s, a) for r, kd, s, a, _ in answers], f"stall {table}")
    n = orphan_checks(f"after the {table} stall", since)
    took, st, _ = wait_ready(c.url, 200, 10)
    check(st == 200, f"/readyz 200 after the stall: {st}")
    SUMMARY.append(f"4 ({table}): statuses {dict(cnt)}; rows {rows} vs acked {len(acked)}; orphans {n}")


def scenario_5(servers, k):
    print("5. one new card, 32 calls at once on two instances")
    since = db_now()
    pan = new_pan()
    barrier = threading.Barrier(32)
    answers = []
    lock = threading.Lock()

    def one(i):
        barrier.wait(timeout=20)
        rid = f"fc5-{i}"
        st, h, a = call(servers[i % len(servers)].url, "POST", "/v1/tokens", k["checkout"], {"value": pan}, rid=rid)
        with lock:
            answers.append((rid, "tokenize", st, a, h))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    c = check_5xx("same card", answers)
    tokens = {a.get("token") for _, _, st, a, _ in answers if st in (200, 201)}
    rows = int(q(f"select count(*) from tokens where created_at >= '{since}'"))
    check(c.get(201) == 1 and c.get(200) == 31 and len(tokens) == 1 and rows == 1,
          f"one 201, 31 200, one token, one row: {dict(c)}, tokens {len(tokens)}, rows {rows}")
    tok = next(iter(tokens), "x")
    details = Counter(q(f"""select coalesce(string_agg(coalesce(detail, '-'), ','), '') from audit_events
        where action = 'token.tokenize' and outcome = 'success' and tokens @> array['{tok}']""").split(","))
    check(details.get("created") == 1 and details.get("existing") == 31,
          f"records of the card: {dict(details)} (want created 1, existing 31)")
    hold_to_records("fc5", [(r, kd, s, a) for r, kd, s, a, _ in answers], "same card")
    SUMMARY.append(f"5: statuses {dict(c)}; rows {rows}; records {dict(details)}")


def extra_partly_refused(a, k, known_pan):
    print("7. a batch that is partly refused: bad items among good ones, then a bucket overrun")
    since = db_now()
    key = k["checkout"]
    new1, new2, new3 = new_pan(), new_pan(), new_pan()
    items = [{"value": known_pan}, {"value": new1}, {"value": "4111 1111 1111 111x"},
             {"value": new2, "expires_at": "2001-01-01T00:00:00Z"}, {"value": with_check_digit("411111111111")},
             {"value": new3, "format": "opaque"}]
    st, h, b = call(a.url, "POST", "/v1/tokens/batch", key, {"items": items}, rid="fc7-mixed")
    shape = [("token" if "token" in r else (r.get("error") or {}).get("code")) for r in (b or {}).get("results", [])]
    check(st == 200 and shape[0] == "token" and shape[1] == "token" and shape[5] == "token"
          and all(s != "token" for s in shape[2:5]), f"mixed batch: {st} {shape}")
    rec = records_for("fc7-mixed").get("fc7-mixed", [])
    check(len(rec) == 1 and rec[0]["detail"] == "items=6 refused=3", f"its record: {[(r['outcome'], r['detail']) for r in rec]}")
    # Bucket overrun: 15 singles fill most of a fresh bucket, then a batch of 10 in it and one card outside.
    first6, last4 = random.choice(["222300", "510510", "601101"]), f"{random.randint(0, 9999):04d}"
    start = random.randint(0, 50000)
    pans = [in_bucket(first6, last4, n) for n in range(start, start + 25)]
    answers = []
    for i, p in enumerate(pans[:15]):
        st, h, x = call(a.url, "POST", "/v1/tokens", key, {"value": p}, rid=f"fc7-s{i}")
        answers.append((f"fc7-s{i}", "tokenize", st, x))
    outside = new_pan()
    st, h, x = call(a.url, "POST", "/v1/tokens/batch", key,
                    {"items": [{"value": p} for p in pans[15:25]] + [{"value": outside}]}, rid="fc7-over")
    answers.append(("fc7-over", "batch", st, x))
    shape = [("created" if r.get("created") else (r.get("error") or {}).get("code") or "existing")
             for r in (x or {}).get("results", [])]
    note(f"singles: {Counter(a_[2] for a_ in answers[:15])}; overrun batch: {st} {Counter(shape)}")
    in_bucket_rows = int(q(f"select count(*) from tokens where masked_pan = '{first6}******{last4}'"))
    created = sum(1 for a_ in answers[:15] if a_[2] == 201) + sum(1 for r in (x or {}).get("results", [])[:10] if r.get("created"))
    check(in_bucket_rows == created and in_bucket_rows <= 20,
          f"rows in the bucket {in_bucket_rows} == created answers {created} (budget 20)")
    locks = int(q("select count(*) from audit_events where action = 'tokenize.enumeration_suspected' "
                  "and request_id = 'fc7-over'"))
    note(f"enumeration_suspected records for the overrun batch: {locks}")
    hold_to_records("fc7", answers, "partly refused")
    n = orphan_checks("after partly refused batches", since)
    SUMMARY.append(f"7: bucket rows {in_bucket_rows} == created {created}; "
                   f"lock records {locks}; orphans {n}")


def extra_expired(a, k):
    print("8. an expired card tokenized again, 8 at once (it was refused while the trail refused, in 1)")
    exp_pan, old = k["expired_pan"], k["expired_token"]
    answers = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def one(i):
        barrier.wait(timeout=20)
        rid = f"fc8-{i}"
        st, h, x = call(a.url, "POST", "/v1/tokens", k["checkout"], {"value": exp_pan}, rid=rid)
        with lock:
            answers.append((rid, "tokenize", st, x, h))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    c = check_5xx("expired card", answers)
    tokens = {x.get("token") for _, _, st, x, _ in answers if st in (200, 201)}
    check(c.get(201) == 1 and c.get(200) == 7 and len(tokens) == 1 and old not in tokens,
          f"one fresh token: {dict(c)}, distinct tokens {len(tokens)}, old token reissued: {old in tokens}")
    destroyed = q(f"select destroyed_at is not null from tokens where token = '{old}'")
    purges = int(q(f"select count(*) from audit_events where action = 'token.purge' and tokens @> array['{old}']"))
    check(destroyed == "t" and purges == 1, f"the old token destroyed ({destroyed}) with one token.purge record ({purges})")
    hold_to_records("fc8", [(r, kd, s, x) for r, kd, s, x, _ in answers], "expired card")
    SUMMARY.append(f"8: statuses {dict(c)}; old destroyed {destroyed}; purge records {purges}")


def extra_overlapping_batches(servers, k):
    print("9. 16 batches at once on two instances, each repeating 3 new cards in its own order (one spelled twice)")
    since = db_now()
    p1, p2, p3 = new_pan(), new_pan(), new_pan()
    spaced = " ".join(p1[i:i + 4] for i in range(0, 16, 4))
    answers = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def one(i):
        rng = random.Random(i)
        items = [p1, p2, p3, spaced]
        rng.shuffle(items)
        if i % 2:
            items.reverse()
        barrier.wait(timeout=20)
        rid = f"fc9-{i}"
        st, h, x = call(servers[i % len(servers)].url, "POST", "/v1/tokens/batch", k["checkout"],
                        {"items": [{"value": v} for v in items]}, rid=rid)
        with lock:
            answers.append((rid, "batch", st, x, h, items))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    c = check_5xx("overlapping batches", [a_[:5] for a_ in answers])
    by_pan = {p1: set(), p2: set(), p3: set()}
    created = Counter()  # calls that say they created the card
    twice_in_a_call = 0
    for _, _, st, x, _, items in answers:
        mine = Counter()
        for v, r in zip(items, (x or {}).get("results", [])):
            p = v.replace(" ", "")
            if "token" in r:
                by_pan[p].add(r["token"])
                mine[p] += 1 if r.get("created") else 0
        for p, n in mine.items():
            created[p] += 1 if n else 0
            twice_in_a_call += 1 if n > 1 else 0
    if twice_in_a_call:
        note(f"{twice_in_a_call} calls answered created for both spellings of the card they repeated")
    rows = int(q(f"select count(*) from tokens where created_at >= '{since}'"))
    check(c.get(200) == 16 and all(len(s) == 1 for s in by_pan.values()) and rows == 3
          and all(created[p] == 1 for p in by_pan),
          f"one token per card: statuses {dict(c)}, tokens per card {[len(s) for s in by_pan.values()]}, "
          f"rows {rows}, created per card {[created[p] for p in by_pan]}")
    hold_to_records("fc9", [(r, kd, s, x) for r, kd, s, x, _, _ in answers], "overlapping batches")
    # Each card went out 16 times, so the one-record-per-row check of the floods does not apply:
    # every call's record naming its tokens is held above; here, no row without its records.
    n = orphan_checks("after overlapping batches")
    SUMMARY.append(f"9: statuses {dict(c)}; rows {rows}; calls saying created {dict((p[-4:], v) for p, v in created.items())}; orphans {n}")


def main():
    random.seed()
    started = time.time()
    tmp = tempfile.mkdtemp(prefix="strongroom-failclosed-")
    checkpoints = os.path.join(tmp, "checkpoints.jsonl")
    policy = os.path.join(tmp, "policies.toml")
    with open(policy, "w") as f:
        f.write(POLICIES)
    psql(f"create database {DB}")
    env = dict(os.environ, DATABASE_URL=f"{BASE}/{DB}", STRONGROOM_LOG="warn",
               STRONGROOM_AUDIT_CHECKPOINT_FILE=checkpoints)
    env["STRONGROOM_MASTER_KEY"] = subprocess.run([BIN, "keygen"], capture_output=True, text=True, check=True).stdout.strip()
    servers = []
    verified = None
    try:
        subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True, timeout=120)
        principals = {
            "checkout": create("acme", "checkout", ["tokenizer"], env),
            "payments": create("acme", "payments", ["detokenizer"], env),
            "alice": create("acme", "alice", ["requester"], env, totp_=True),
            "bob": create("acme", "bob", ["approver"], env, totp_=True),
        }
        k = {n: p["key"] for n, p in principals.items()}
        log = open(os.path.join(tmp, "servers.log"), "w")
        common = ["--policy-file", policy, "--rate-limit-per-second", "0"]
        a = Server("A", env, log, common)
        b = Server("B", env, log, common)
        c = Server("C", env, log, common + ["--request-timeout-secs", "1"])
        servers = [a, b, c]
        a.start()
        b.start()
        print(f"vault: {BIN}; database {DB}; instances A {a.url}, B {b.url}; logs in {tmp}")
        known_pan = new_pan()
        k["expired_pan"] = new_pan()
        exp_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
        st, _, t = call(a.url, "POST", "/v1/tokens", k["checkout"], {"value": k["expired_pan"], "expires_at": exp_at})
        check(st == 201, f"a card whose token expires in ~3 s: {st}")
        k["expired_token"] = t["token"]
        time.sleep(3.5)

        scenario_1(a, k, principals, known_pan)
        acked = scenario_2(b, k)
        scenario_3(a, k, acked[:500] or [known_pan], b)
        c.start()
        scenario_4(c, k, "tokens")
        scenario_4(c, k, "audit_events")
        scenario_5([a, b], k)
        extra_partly_refused(a, k, known_pan)
        extra_expired(a, k)
        extra_overlapping_batches([a, b], k)

        print("6. stop gracefully, verify the trail")
        codes = {s.name: s.stop() for s in servers}
        check(all(v == 0 for v in codes.values()), f"SIGTERM exits: {codes}")
        orphan_checks("at the end")
        r = subprocess.run([BIN, "audit", "verify", "--audit-checkpoint-file", checkpoints], env=env,
                           capture_output=True, text=True, timeout=120)
        verified = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
        check(r.returncode == 0, f"audit verify: exit {r.returncode}: {verified[0]}")
        if r.returncode != 0:
            print((r.stdout + r.stderr)[-2000:])
        SUMMARY.append(f"6: verify exit {r.returncode}: {verified[0]}")
    finally:
        for s in servers:
            if s.proc and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(timeout=10)
        try:
            q("drop trigger if exists refuse_audit on audit_events")
        except Exception:
            pass
        psql(f"drop database if exists {DB} with (force)")
    print("\nsummary")
    for line in SUMMARY:
        print("  " + line)
    print(f"  {time.time() - started:.0f} s; {len(FAILED)} failed" + (": " + "; ".join(FAILED) if FAILED else ""))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
