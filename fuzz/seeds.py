#!/usr/bin/env python3
"""Writes the seed corpora: fuzz/corpus/<target>/seed-*, a handful of small valid inputs per
target (real examples of each format), and a few near misses. Deterministic: running it again
rewrites the same files. Inputs the fuzzer found (crashes kept as regressions, `regress-*`)
are not touched.

    python3 fuzz/seeds.py
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# --- protobuf, by hand: enough of the wire format for our messages -------------------------


def varint(n):
    if n < 0:
        n += 1 << 64  # int32/int64 negatives: ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_var(num, v):
    return varint(num << 3) + varint(v) if v else b""


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b if b else b""


def f_rep(num, items):
    return b"".join(f_bytes(num, i) for i in items)


def f_msg(num, body):
    # An embedded message is written even when empty (a oneof member present).
    return varint(num << 3 | 2) + varint(len(body)) + body


def f_packed(num, values):
    body = b"".join(varint(v) for v in values)
    return f_msg(num, body) if values else b""


UID = "6f1c1b2e-8d4a-11ee-b9d1-0242ac120002"
UID2 = "0b9f6f9e-5c1d-4c55-9d0e-3a1d2f4b5c6d"
KEY = bytes(range(16))
CREDS = bytes(range(32))
LST = ["10.0.0.1:5100", "10.0.0.1:5101"]
PROD = ["192.168.1.7:7000", "[fe80::1]:7001"]
TOKEN = "AgXyz0l9token"

# --- the 1.2 rpc messages --------------------------------------------------------------------


def request(uid=UID, role="PROD", num_conn=2, rate=0, key=b""):
    return f_bytes(1, uid) + f_bytes(2, role) + f_var(3, num_conn) + f_var(4, rate) + f_bytes(5, key)


def update(uid=UID, remote=LST, role="", creds=b""):
    return f_bytes(1, uid) + f_rep(2, remote) + f_bytes(3, role) + f_bytes(4, creds)


def hello(uid=UID, prod=PROD, role="", key=b""):
    return f_bytes(1, uid) + f_rep(2, prod) + f_bytes(3, role) + f_bytes(4, key)


def response(lst=LST, prod=PROD):
    return f_rep(1, lst) + f_rep(2, prod)


def app_response(message="Hello received", lst=LST):
    return f_bytes(1, message) + f_rep(2, lst)


def status(uid=UID, state="Established", role="CONS", failure=0, node="embedded"):
    return (
        f_bytes(1, uid) + f_bytes(2, state) + f_bytes(3, role) + f_var(4, 2) + f_var(5, 1000)
        + f_rep(6, LST) + f_rep(7, PROD) + f_rep(8, ["203.0.113.5:5100"]) + f_var(9, failure)
        + f_var(10, 1 << 30) + f_var(11, 12) + f_var(12, 2) + f_var(13, 5) + f_var(14, 1)
        + f_var(15, 1 << 20) + f_var(16, 10) + f_bytes(17, "alice@uni.edu") + f_bytes(18, node)
    )


# --- the envelope -----------------------------------------------------------------------------


def call(uid=UID, seq=1, token=TOKEN):
    return f_bytes(1, uid) + f_var(2, seq) + f_bytes(3, token)


ENVELOPES = {
    "req": f_msg(1, f_bytes(1, UID) + f_var(2, 1) + f_bytes(3, TOKEN) + f_bytes(4, "PROD") + f_var(5, 2)
                 + f_var(6, 1000) + f_bytes(7, KEY)),
    "req-listeners": f_msg(2, call()),
    "update": f_msg(3, f_bytes(1, UID) + f_var(2, 3) + f_bytes(3, TOKEN) + f_rep(4, LST) + f_bytes(5, CREDS)),
    "rel": f_msg(4, call(seq=4)),
    "resp": f_msg(5, f_bytes(1, UID) + f_var(2, 1) + f_rep(3, LST) + f_rep(4, PROD)),
    "prod-lstn": f_msg(6, f_bytes(1, UID) + f_var(2, 2) + f_rep(3, PROD)),
    "updated": f_msg(7, f_bytes(1, UID) + f_var(2, 3)),
    "released": f_msg(8, f_bytes(1, UID) + f_var(2, 4)),
    "error": f_msg(9, f_bytes(1, UID) + f_var(2, 1) + f_var(3, 4)),
    "hello": f_msg(10, f_bytes(1, UID) + f_var(2, 1) + f_bytes(3, KEY) + f_rep(4, PROD)),
    "hello-ack": f_msg(11, f_bytes(1, UID) + f_var(2, 1) + f_rep(3, LST)),
    "ds-boot": f_msg(12, f_var(1, 7)),
    "attach": f_msg(13, f_var(1, 3) + f_rep(2, [UID, UID2]) + f_var(3, 1)),
    "attach-ack": f_msg(14, f_var(1, 3) + f_var(2, 7) + f_rep(3, [UID]) + f_var(4, 1) + f_var(5, 101)
                        + f_var(6, 10000)),
    "start-lstn": f_msg(15, f_bytes(1, UID) + f_var(2, 3) + f_var(3, 2) + f_bytes(4, "CONS")),
    "lstn": f_msg(16, f_bytes(1, UID) + f_var(2, 7) + f_packed(3, [5100, 5101]) + f_bytes(4, "10.0.0.1")),
    "refused": f_msg(17, f_bytes(1, UID) + f_var(2, 7) + f_var(3, 4)),
    "start-conn": f_msg(18, f_bytes(1, UID) + f_var(2, 3) + f_rep(3, ["203.0.113.5:5100"]) + f_bytes(4, CREDS)
                        + f_bytes(5, "CONS") + f_var(6, 1000)),
    "connected": f_msg(19, f_bytes(1, UID) + f_var(2, 7)),
    "ds-rel": f_msg(20, f_bytes(1, UID) + f_var(2, 3)),
    "ds-released": f_msg(21, f_bytes(1, UID) + f_var(2, 7)),
}

STORED = (
    f_bytes(1, UID) + f_bytes(2, "alice@uni.edu") + f_bytes(3, "PROD") + f_var(4, 2) + f_var(5, 1000)
    + f_bytes(6, KEY) + f_rep(7, LST) + f_rep(8, PROD) + f_rep(9, ["203.0.113.5:5100"]) + f_bytes(10, CREDS)
    + f_bytes(11, "10.0.1.2:5010")
)

NODE_TRAFFIC = f_var(2, 1 << 30) + f_var(3, 12) + f_var(4, 2) + f_var(5, 5) + f_var(6, 1) + f_var(7, 1 << 20)

# --- text formats -----------------------------------------------------------------------------

S2CS_TOML = [
    'port-range = "5100-5199"\nmax-num-conn = 2\nhello-timeout = 30\n',
    'listener-ip = "10.16.42.61"\nport = 5000\nport-range = "31100-31103"\nserver-crt = "/etc/scistream/cert.pem"\n'
    'server-key = "/etc/scistream/key.pem"\nclient-id = "c42c0dac-0a52-408e-a04f-5d31bfe0aef8"\n'
    'client-secret-file = "/etc/scistream/secret"\nrequire-auth = true\noperator = ["ops@facility.org"]\n'
    'auth-cache-ttl = 60\nauth-cache-size = 10000\ncapacity = 10000\nstate-dir = "/var/lib/scistream"\n',
    'listener-ip = "0.0.0.0"\nwan-ip = "0.0.0.0"\nlan-ip = "192.168.1.1"\npublic-addr = "gw.facility-a.org"\n'
    'insecure = true\nallow-keyless-sessions = true\nallow-plain-wan = true\ntype = "native"\nverbose = 1\n',
    's2ds = ["10.0.1.2:5010", "10.0.1.3:5010"]\ns2ds-trust = ["/etc/scistream/ca.pem"]\n'
    'server-crt = "cert.pem"\nserver-key = "key.pem"\nauth-url = "https://auth.example.org"\n'
    'introspect-url = "https://auth.example.org/introspect"\nscope = "c42c0dac-0a52-408e-a04f-5d31bfe0aef8"\n',
    'port_range = "5100-5200"\n',  # an unknown key (underscore): refused
]

S2DS_TOML = [
    'listen = "10.0.1.2:5010"\ncert = "node.pem"\nkey = "node-key.pem"\ntrust = ["ca.pem"]\nport-range = "5100-5200"\n',
    'listen = "[::1]:0"\ncert = "c"\nkey = "k"\ntrust = ["t1", "t2"]\nwan-ip = "0.0.0.0"\n'
    'public-addr = "[2001:db8::7]"\nlan-ip = "10.0.0.9"\nallow-plain-wan = true\nmax-num-conn = 64\n'
    'capacity = 125000\nverbose = 2\n',
    'port-range = "7-7"\ncapacity = 0\n',
]

S2UC_TOML = [
    'auth-url = "https://auth.globus.org"\nclient-id = "4787c84e-9c55-4881-b941-cb6720cea11c"\n'
    'redirect-url = "https://auth.globus.org/v2/web/auth-code"\n'
    'default-scope = "c42c0dac-0a52-408e-a04f-5d31bfe0aef8"\n[scopes]\n'
    '"10.16.42.61:5000" = "c42c0dac-0a52-408e-a04f-5d31bfe0aef8"\n'
    '"gateway.facility-b.org" = "https://auth.globus.org/scopes/abc/scistream"\n',
    'auth-url = "http://127.0.0.1:8080/"\n[scopes]\n"::1" = "local"\n"[::1]:5000" = "local6"\n',
    '',
]

TOKENS = json.dumps({"tokens": {
    "https://auth.globus.org/scopes/abc/scistream": {
        "scope": "https://auth.globus.org/scopes/abc/scistream", "access_token": "AgA1", "refresh_token": "AgR1",
        "expires_at": 1750003600, "identity": "alice@uni.edu", "obtained_at": 1750000000},
    "local": {"scope": "local", "access_token": "t", "obtained_at": 1}}}, indent=2)

PENDING = json.dumps({
    "url": "https://auth.globus.org/v2/oauth2/authorize?response_type=code&client_id=x&state=st",
    "scope": "https://auth.globus.org/scopes/abc/scistream",
    "redirect": "http://127.0.0.1:43210/callback", "verifier": "v" * 43, "state": "st-4f3a",
    "started_at": 1750000000})

SCOPE = "https://auth.globus.org/scopes/facility/scistream"
INTROSPECTIONS = [
    {"active": True, "scope": SCOPE + " openid email", "client_id": "c", "username": "alice@uni.edu",
     "sub": "6c2c0dac-0a52-408e-a04f-5d31bfe0aef8", "exp": 1750003600, "iat": 1749999000, "nbf": 1749999000,
     "token_type": "Bearer", "aud": ["facility"], "iss": "https://auth.globus.org", "jti": "j1"},
    {"active": True, "scope": "openid", "sub": "bob", "exp": 1750003600},
    {"active": False},
    {"active": True, "scope": SCOPE, "username": "carol"},
]


def b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


JWT = b64url(b'{"alg":"none"}') + "." + b64url(b'{"sub":"u-1","preferred_username":"alice@uni"}') + "."
TOKEN_ANSWERS = [
    {"access_token": "AgA2", "token_type": "Bearer", "expires_in": 172800, "refresh_token": "AgR2",
     "scope": SCOPE, "id_token": JWT},
    {"access_token": "AgA3", "token_type": "bearer", "expires_in": 3600},
    {"access_token": "AgA4", "token_type": "Bearer", "scope": "openid email"},
]

HTTP = [
    b"GET /callback?code=abc%2B1&state=st-4f3a HTTP/1.1\r\nHost: 127.0.0.1:43210\r\nUser-Agent: Mozilla/5.0\r\n\r\n",
    b"GET /callback?error=access_denied&error_description=User+said+no&state=st-4f3a HTTP/1.1\r\n\r\n",
    b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1:43210\r\n\r\n",
    b"GET /callback?code=forged&state=other HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
]

LISTENERS = [
    "10.0.0.1:5100,gw:5101", "10.0.0.1:5100 gw:5101", "['10.0.0.1:5100', 'gw:5101']",
    '["10.0.0.1:5100","gw:5101"]', "[::1]:5000", "gw", "gw:0",
]

RANGES = ["5100-5200", " 7 - 7 ", "1-65535", "0-5", "5200-5100", "-", "5100"]


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for d in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        for f in os.listdir(os.path.join(CORPUS, d)):
            if f.startswith("seed-"):
                os.remove(os.path.join(CORPUS, d, f))

    calls = {
        "req": (0, request()), "req-key": (0, request(role="cons", num_conn=4, rate=125000, key=KEY)),
        "req-zero-conn": (0, request(num_conn=0)), "req-negative-rate": (0, request(rate=-1)),
        "update": (1, update()), "update-creds": (1, update(role="CONS", creds=CREDS)),
        "release": (2, f_bytes(1, UID)), "hello": (3, hello()), "hello-key": (3, hello(role="PROD", key=KEY)),
        "listeners": (4, f_bytes(1, UID)), "status": (5, f_bytes(1, UID)),
        "auth-raw": (6, b"AgXyz0l9token"), "auth-bearer": (6, b"Bearer AgXyz0l9token"),
        "auth-invalid": (6, b"INVALID_TOKEN"),
    }
    for name, (which, body) in calls.items():
        write("control_calls", name, bytes([which]) + body)

    answers = {
        "response": (0, response()), "response-empty": (0, b""), "app-response": (1, app_response()),
        "status": (2, status()), "status-failed": (2, status(state="Failed", failure=8)),
        "list": (3, f_msg(1, status()) + f_msg(1, status(uid=UID2, node="10.0.1.2:5010")) + f_bytes(2, "alice")),
    }
    for name, (which, body) in answers.items():
        write("control_answers", name, bytes([which]) + body)

    for name, body in ENVELOPES.items():
        write("envelope", name, body)
        write("node_link", name, b"\x00" + body)
    write("node_link", "traffic", b"\x01" + f_msg(1, f_bytes(1, UID) + NODE_TRAFFIC) + f_msg(1, f_bytes(1, UID2)))

    rng = random.Random(11)
    for i in range(6):
        write("envelope_roundtrip", str(i), bytes(rng.randrange(256) for _ in range(64 + 32 * i)))

    write("stored_session", "record", STORED)
    write("stored_session", "short-key", STORED.replace(f_bytes(6, KEY), f_bytes(6, KEY[:15])))

    for i, t in enumerate(S2CS_TOML):
        write("s2cs_config", str(i), t)
    for i, t in enumerate(S2DS_TOML):
        write("s2ds_config", str(i), t)
    for i, t in enumerate(S2UC_TOML):
        write("s2uc_config", str(i), t)

    write("token_store", "tokens", b"\x00" + TOKENS.encode())
    write("token_store", "tokens-empty", b'\x00{"tokens":{}}')
    write("token_store", "pending-login", b"\x01" + PENDING.encode())
    rng = random.Random(12)
    for i in range(3):
        write("token_store", "structured-tokens-" + str(i), b"\x02" + bytes(rng.randrange(256) for _ in range(120)))
        write("token_store", "structured-pending-" + str(i), b"\x03" + bytes(rng.randrange(256) for _ in range(60)))
        write("token_answer", "structured-" + str(i), b"\x01" + bytes(rng.randrange(256) for _ in range(80)))
        write("introspection_answer", "structured-" + str(i), b"\x00" + bytes(rng.randrange(256) for _ in range(60)))

    for i, a in enumerate(INTROSPECTIONS):
        write("introspection_answer", str(i), json.dumps(a))
    for i, a in enumerate(TOKEN_ANSWERS):
        write("token_answer", str(i), b"\x02" + json.dumps(a).encode())
    write("token_answer", "id-token", b"\x00" + JWT.encode())

    for i, h in enumerate(HTTP):
        write("loopback_http", str(i), h)
    for i, text in enumerate(LISTENERS):
        write("listener_list", str(i), text)
    for i, text in enumerate(RANGES):
        write("port_range", str(i), text)

    scenarios = os.path.join(HERE, "..", "sim", "scenarios")
    for name in ["happy", "lossy", "nodes", "config-space", "crash-s2cs-prod", "partition-during-setup"]:
        with open(os.path.join(scenarios, name + ".toml"), "rb") as f:
            write("scenario", name + ".toml", f.read())

if __name__ == "__main__":
    main()
