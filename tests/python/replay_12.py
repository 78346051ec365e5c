#!/usr/bin/env python3
"""Replays the call sequences of SciStream 1.2's Python clients (`s2uc` and `appctrl`, grpcio)
against two control servers, a producer facility's and a consumer facility's, and checks every
answer.

    replay_12.py --prod HOST:PORT --cons HOST:PORT (--cert PEM [--cert PEM] | --insecure)
                 [--only TEXT] [--extra]

Like the 1.2 clients: addresses are "host:port" strings, roles "PROD"/"CONS", every call
carries `authorization: <token>` metadata (a raw token, or the literal INVALID_TOKEN of a user
who never logged in), calls carry no deadline, each command and each application controller
opens its own channel (grpc.insecure_channel, or grpc.secure_channel with
grpc.ssl_channel_credentials(root_certificates=<server cert PEM>)), and a producer's blocking
req runs in a thread while the controller's Hello follows it (1.2 sleeps 0.5 s; 0.1 s here).
The servers are expected to run with authentication off, as 1.2 without credentials.

Prints one line per scenario and a final `N passed, M failed`; exits 1 on any failure. --extra
adds the scenarios our servers do not pass yet (see its help).
"""

import argparse
import re
import socket
import sys
import threading
import time
import uuid

import proto_stubs

pb2, pb2_grpc = proto_stubs.load()
import grpc  # noqa: E402  (after the dependency check in proto_stubs)

# A Globus access token as 1.2 sends it: raw, no "Bearer".
RAW_TOKEN = "AgV3b1Jy0GxQpzD9kq7n8mO2lE5wYdKXeTfWjBcMhNuS4RaHiPv6x"
# What 1.2's s2uc sends when the user never logged in.
INVALID_TOKEN = "INVALID_TOKEN"
# 1.2's client sleeps 0.5 s between the producer's req and the controller's Hello.
HELLO_DELAY = 0.1
# Local bound on every call (1.2 sends no deadline; this only keeps the replay finite).
CALL_BOUND = 20.0
RATE = 10000

ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


class Failure(Exception):
    """A scenario's expectation that did not hold."""


def expect(cond, what):
    if not cond:
        raise Failure(what)


def describe(e):
    if isinstance(e, grpc.RpcError):
        return f"{e.code().name}: {e.details()}"
    return f"{type(e).__name__}: {e}" if not isinstance(e, Failure) else str(e)


class Pending:
    """A call running in its own thread, as 1.2's ThreadPoolExecutor runs them."""

    def __init__(self, what, fn, *args, **kwargs):
        self.what = what
        self.done = threading.Event()
        self.value = None
        self.error = None
        self.started = time.monotonic()
        threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True).start()

    def _run(self, fn, args, kwargs):
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # handed to whoever waits for the result
            self.error = e
        finally:
            self.done.set()

    def result(self, bound=CALL_BOUND):
        if not self.done.wait(bound):
            raise Failure(f"{self.what}: no answer within {bound:.0f} s")
        if self.error is not None:
            raise self.error
        return self.value


class Facility:
    """A control server as the 1.2 clients reach it."""

    def __init__(self, name, addr, cert_pem):
        self.name = name
        self.addr = addr
        self.cert_pem = cert_pem

    def client(self, token):
        return Client(self, token)


class Client:
    """One 1.2 client process talking to one facility: its own channel, its token on every call."""

    def __init__(self, facility, token):
        self.facility = facility
        if facility.cert_pem is None:
            self.channel = grpc.insecure_channel(facility.addr)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=facility.cert_pem)
            self.channel = grpc.secure_channel(facility.addr, creds)
        self.stub = pb2_grpc.ControlStub(self.channel)
        self.metadata = (("authorization", token),)

    def start(self, rpc, msg):
        what = f"{rpc} at {self.facility.name} ({self.facility.addr})"
        return Pending(what, getattr(self.stub, rpc), msg, metadata=self.metadata)

    def call(self, rpc, msg, bound=CALL_BOUND):
        return self.start(rpc, msg).result(bound)

    def refused(self, rpc, msg, code, what):
        """Sends a call that must fail with `code`."""
        try:
            answer = self.call(rpc, msg)
        except grpc.RpcError as e:
            expect(e.code() == code, f"{what}: expected {code.name}, got {describe(e)}")
            return
        raise Failure(f"{what}: expected {code.name}, got an answer {answer!r}")

    def close(self):
        self.channel.close()


class Scene:
    """What a scenario opened and made, closed and released whatever happens."""

    def __init__(self):
        self.clients = []
        self.sessions = []

    def client(self, facility, token=RAW_TOKEN):
        c = facility.client(token)
        self.clients.append(c)
        return c

    def made(self, client, uid):
        self.sessions.append((client, uid))

    def cleanup(self):
        for c, uid in self.sessions:
            try:
                c.call("release", pb2.Release(uid=uid), bound=5)
            except Exception:
                pass
        for c in self.clients:
            c.close()


def new_uid():
    return str(uuid.uuid1())  # 1.2's s2uc uses uuid1


def app_addrs(n, base=7000):
    """Producer application listeners as 1.2's appctrl announces them."""
    return [f"127.0.0.1:{base + 10000 * i}" for i in range(n)]


def split(addr):
    m = ADDR.match(addr)
    return m.group(1).strip("[]"), int(m.group(2))


def check_listeners(listeners, n, what):
    listeners = list(listeners)
    expect(len(listeners) == n, f"{what}: {len(listeners)} listeners for num_conn={n}: {listeners}")
    for a in listeners:
        m = ADDR.match(a)
        expect(m is not None and 1 <= int(m.group(2)) <= 65535, f"{what}: listener {a!r} is not host:port")
    expect(len(set(listeners)) == n, f"{what}: listeners repeat: {listeners}")
    return listeners


def accepts(addr):
    try:
        with socket.create_connection(split(addr), timeout=1.0):
            return True
    except OSError:
        return False


def check_bound(listeners, what):
    for a in listeners:
        expect(accepts(a), f"{what}: nothing listens on {a}")


def check_closed(listeners, what, within=3.0):
    deadline = time.monotonic() + within
    left = list(listeners)
    while left and time.monotonic() < deadline:
        left = [a for a in left if accepts(a)]
        if left:
            time.sleep(0.05)
    expect(not left, f"{what}: still listening after release: {left}")


def check_empty(resp, what):
    expect(isinstance(resp, pb2.Response) and resp.ByteSize() == 0, f"{what}: not an empty Response: {resp!r}")


def release_twice(client, uid, listeners, what):
    """1.2's `release`: an empty Response; a second release is harmless; the listeners close."""
    check_empty(client.call("release", pb2.Release(uid=uid)), f"{what} release")
    check_empty(client.call("release", pb2.Release(uid=uid)), f"{what} second release")
    check_closed(listeners, what)


def producer_req_with_hello(scene, prod, token, uid, n, hello_listeners):
    """A producer's req in a thread and, HELLO_DELAY later, the controller's Hello from its own
    channel (1.2's appctrl, with no app key); answers (req response, hello response)."""
    s2uc = scene.client(prod, token)
    req = s2uc.start("req", pb2.Request(uid=uid, role="PROD", num_conn=n, rate=RATE))
    scene.made(s2uc, uid)
    time.sleep(HELLO_DELAY)
    expect(not req.done.is_set() or req.error is not None,
           f"producer req answered before the Hello: {req.value!r}")
    appctrl = scene.client(prod, token)
    hello = appctrl.call("hello", pb2.Hello(uid=uid, prod_listeners=hello_listeners, role="PROD"))
    resp = req.result()
    return s2uc, resp, hello


def check_producer(resp, hello, n, hello_listeners, what):
    listeners = check_listeners(resp.listeners, n, f"{what} req")
    expect(list(resp.prod_listeners) == list(hello_listeners),
           f"{what} req: prod_listeners {list(resp.prod_listeners)} do not echo the Hello's {hello_listeners}")
    expect(isinstance(hello, pb2.AppResponse), f"{what} hello: not an AppResponse: {hello!r}")
    expect(not hello.listeners or list(hello.listeners) == listeners,
           f"{what} hello: listeners {list(hello.listeners)} are not the session's {listeners}")
    return listeners


SCENARIOS = []


def scenario(name, extra=False):
    """Registers a scenario; an `extra` one runs only with --extra (see main)."""
    def register(fn):
        SCENARIOS.append((name, fn, extra))
        return fn
    return register


@scenario("inbound-request at the producer, outbound-request at the consumer, release")
def inbound_outbound(scene, prod, cons):
    n, uid = 3, new_uid()
    hello_l = app_addrs(n)
    # inbound-request: req(PROD), ~0.5 s later hello(uid, [remote_ip:port...], PROD), then update.
    s2uc_p, resp, hello = producer_req_with_hello(scene, prod, RAW_TOKEN, uid, n, hello_l)
    prod_l = check_producer(resp, hello, n, hello_l, "inbound")
    check_bound(prod_l, "inbound")
    s2uc_p.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=resp.prod_listeners))
    # outbound-request UID LISTENERS at the other facility: req(CONS), update(LISTENERS).
    s2uc_c = scene.client(cons)
    cresp = s2uc_c.call("req", pb2.Request(uid=uid, role="CONS", num_conn=n, rate=RATE))
    scene.made(s2uc_c, uid)
    cons_l = check_listeners(cresp.listeners, n, "outbound req")
    check_bound(cons_l, "outbound")
    s2uc_c.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=prod_l))
    # release: each s2cs, with a fresh channel as 1.2's release command opens.
    release_twice(scene.client(prod), uid, prod_l, "producer")
    release_twice(scene.client(cons), uid, cons_l, "consumer")


@scenario("prod-req with an external appctrl, cons-req UID PROD_LSTN, release (token INVALID_TOKEN)")
def prod_req_cons_req(scene, prod, cons):
    n, uid = 2, new_uid()
    hello_l = app_addrs(n, base=7100)
    s2uc_p, resp, hello = producer_req_with_hello(scene, prod, INVALID_TOKEN, uid, n, hello_l)
    prod_l = check_producer(resp, hello, n, hello_l, "prod-req")
    s2uc_p.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=resp.prod_listeners))
    # cons-req UID PROD_LSTN: the user retyped one of prod-req's listeners.
    s2uc_c = scene.client(cons, INVALID_TOKEN)
    cresp = s2uc_c.call("req", pb2.Request(uid=uid, role="CONS", num_conn=n, rate=RATE))
    scene.made(s2uc_c, uid)
    cons_l = check_listeners(cresp.listeners, n, "cons-req")
    s2uc_c.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=[prod_l[0]]))
    release_twice(scene.client(prod, INVALID_TOKEN), uid, prod_l, "producer")
    release_twice(scene.client(cons, INVALID_TOKEN), uid, cons_l, "consumer")


@scenario("bytes cross the path 1.2's inbound/outbound requests set up, both ways", extra=True)
def data_through_path(scene, prod, cons):
    uid = new_uid()
    app = socket.socket()
    app.bind(("127.0.0.1", 0))
    app.listen(1)
    app.settimeout(5)
    got = {}

    def producer_app():
        try:
            conn, _ = app.accept()
            with conn:
                conn.settimeout(5)
                got["ping"] = conn.recv(4)
                conn.sendall(b"data from the producer")
        except OSError as e:
            got["error"] = e

    t = threading.Thread(target=producer_app, daemon=True)
    t.start()
    try:
        hello_l = [f"127.0.0.1:{app.getsockname()[1]}"]
        s2uc_p, resp, hello = producer_req_with_hello(scene, prod, RAW_TOKEN, uid, 1, hello_l)
        prod_l = check_producer(resp, hello, 1, hello_l, "inbound")
        s2uc_p.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=resp.prod_listeners))
        s2uc_c = scene.client(cons)
        cresp = s2uc_c.call("req", pb2.Request(uid=uid, role="CONS", num_conn=1, rate=RATE))
        scene.made(s2uc_c, uid)
        cons_l = check_listeners(cresp.listeners, 1, "outbound req")
        s2uc_c.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=prod_l))
        data = b""
        try:
            with socket.create_connection(split(cons_l[0]), timeout=5) as s:
                s.sendall(b"ping")
                while len(data) < len(b"data from the producer"):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    data += chunk
        except OSError as e:
            raise Failure(f"consumer at {cons_l[0]}: {describe(e)} after {data!r} "
                          f"(the producer application got {got.get('ping')!r})") from e
        t.join(5)
        expect("error" not in got, f"producer application: {got.get('error')}")
        expect(got.get("ping") == b"ping", f"the producer application got {got.get('ping')!r}, not b'ping'")
        expect(data == b"data from the producer", f"the consumer got {data!r}")
        release_twice(scene.client(prod), uid, prod_l, "producer")
        release_twice(scene.client(cons), uid, cons_l, "consumer")
    finally:
        app.close()


@scenario("request: both reqs at once, then the producer's and the consumer's AppCtrl Hello")
def two_facility_request(scene, prod, cons):
    # 1.2's `s2uc request`: req(PROD) and req(CONS) in threads, 0.5 s later an AppCtrl Hello at
    # each facility (the consumer's starts the consumer on the listeners it answers), then update.
    n, uid = 2, new_uid()
    hello_l = app_addrs(n, base=7300)
    s2uc_p, s2uc_c = scene.client(prod), scene.client(cons)
    preq = s2uc_p.start("req", pb2.Request(uid=uid, role="PROD", num_conn=n, rate=RATE))
    creq = s2uc_c.start("req", pb2.Request(uid=uid, role="CONS", num_conn=n, rate=RATE))
    scene.made(s2uc_p, uid)
    scene.made(s2uc_c, uid)
    time.sleep(HELLO_DELAY)
    phello = Pending("producer AppCtrl hello", scene.client(prod).call, "hello",
                     pb2.Hello(uid=uid, prod_listeners=hello_l, role="PROD"))
    chello = Pending("consumer AppCtrl hello", scene.client(cons).call, "hello", pb2.Hello(uid=uid, role="CONS"))
    prod_l = check_producer(preq.result(), phello.result(), n, hello_l, "request")
    cons_l = check_listeners(creq.result().listeners, n, "request consumer req")
    ch = chello.result()
    expect(list(ch.listeners) == cons_l, f"consumer hello: listeners {list(ch.listeners)}, session's {cons_l}")
    s2uc_p.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=hello_l))
    s2uc_c.call("update", pb2.UpdateTargets(uid=uid, remote_listeners=prod_l))
    release_twice(scene.client(prod), uid, prod_l, "producer")
    release_twice(scene.client(cons), uid, cons_l, "consumer")


@scenario("release of a uid no server holds answers NOT_FOUND")
def release_unknown(scene, prod, cons):
    for fac in (prod, cons):
        scene.client(fac).refused("release", pb2.Release(uid=new_uid()), grpc.StatusCode.NOT_FOUND,
                                  f"release of an unknown uid at {fac.name}")


@scenario("num_conn=0 answers INVALID_ARGUMENT at once, for either role")
def zero_connections(scene, prod, cons):
    for fac, role in ((prod, "PROD"), (cons, "CONS")):
        c = scene.client(fac)
        uid = new_uid()
        started = time.monotonic()
        c.refused("req", pb2.Request(uid=uid, role=role, num_conn=0, rate=RATE), grpc.StatusCode.INVALID_ARGUMENT,
                  f"req {role} num_conn=0 at {fac.name}")
        took = time.monotonic() - started
        expect(took < 5, f"req {role} num_conn=0 took {took:.1f} s to be refused")


@scenario("a conflicting req on a live uid answers ALREADY_EXISTS; an identical one the same listeners")
def conflicting_req(scene, prod, cons):
    uid = new_uid()
    c = scene.client(cons)
    first = c.call("req", pb2.Request(uid=uid, role="CONS", num_conn=2, rate=RATE))
    scene.made(c, uid)
    cons_l = check_listeners(first.listeners, 2, "consumer req")
    again = c.call("req", pb2.Request(uid=uid, role="CONS", num_conn=2, rate=RATE))
    expect(list(again.listeners) == cons_l, f"repeated req: listeners {list(again.listeners)}, first {cons_l}")
    c.refused("req", pb2.Request(uid=uid, role="CONS", num_conn=3, rate=RATE), grpc.StatusCode.ALREADY_EXISTS,
              "req with another num_conn")
    c.refused("req", pb2.Request(uid=uid, role="PROD", num_conn=2, rate=RATE), grpc.StatusCode.ALREADY_EXISTS,
              "req with another role")
    # A producer's req waiting for its Hello: a conflicting req is refused, the waiting one is not disturbed.
    puid = new_uid()
    hello_l = app_addrs(2, base=7200)
    s2uc = scene.client(prod)
    waiting = s2uc.start("req", pb2.Request(uid=puid, role="PROD", num_conn=2, rate=RATE))
    scene.made(s2uc, puid)
    time.sleep(HELLO_DELAY)
    scene.client(prod).refused("req", pb2.Request(uid=puid, role="PROD", num_conn=3, rate=RATE),
                               grpc.StatusCode.ALREADY_EXISTS, "req conflicting with a waiting producer req")
    expect(not waiting.done.is_set(), f"the waiting producer req ended early: {describe(waiting.error or Failure(repr(waiting.value)))}")
    hello = scene.client(prod).call("hello", pb2.Hello(uid=puid, prod_listeners=hello_l, role="PROD"))
    prod_l = check_producer(waiting.result(), hello, 2, hello_l, "waiting producer")
    release_twice(scene.client(cons), uid, cons_l, "consumer")
    release_twice(scene.client(prod), puid, prod_l, "producer")


@scenario("twelve producers waiting for their Hello neither stall the server nor see each other's listeners")
def many_waiting(scene, prod, cons):
    count = 12
    uids = [new_uid() for _ in range(count)]
    waiting = []
    for uid in uids:
        c = scene.client(prod)
        waiting.append(c.start("req", pb2.Request(uid=uid, role="PROD", num_conn=1, rate=RATE)))
        scene.made(c, uid)
    time.sleep(HELLO_DELAY * 2)
    # 1.2 serves with ten threads: ten waiting reqs froze it. This one must be answered at once.
    other = new_uid()
    c = scene.client(prod)
    started = time.monotonic()
    resp = c.call("req", pb2.Request(uid=other, role="CONS", num_conn=1, rate=RATE), bound=5)
    scene.made(c, other)
    check_listeners(resp.listeners, 1, "consumer req beside twelve waiting producers")
    expect(time.monotonic() - started < 5, "the server stalled behind the waiting producers")
    release_twice(c, other, list(resp.listeners), "consumer beside the producers")
    # Hellos in reverse order, each with its own producer listener.
    wanted = {uid: [f"127.0.0.1:{9000 + i}"] for i, uid in enumerate(uids)}
    for uid in reversed(uids):
        scene.client(prod).call("hello", pb2.Hello(uid=uid, prod_listeners=wanted[uid], role="PROD"))
    seen = set()
    for uid, pending in zip(uids, waiting):
        r = pending.result()
        l = check_listeners(r.listeners, 1, f"producer {uid}")
        expect(list(r.prod_listeners) == wanted[uid],
               f"producer {uid} got prod_listeners {list(r.prod_listeners)}, its Hello sent {wanted[uid]}")
        expect(not seen.intersection(l), f"producer {uid} got listeners another session holds: {l}")
        seen.update(l)
    closer = scene.client(prod)
    for uid in uids:
        check_empty(closer.call("release", pb2.Release(uid=uid)), f"release {uid}")
    check_closed(sorted(seen), "the twelve producers")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prod", required=True, help="the producer facility's control server, HOST:PORT")
    parser.add_argument("--cons", required=True, help="the consumer facility's control server, HOST:PORT")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cert", action="append",
                      help="a server certificate or CA (PEM) to trust as root; repeat for each facility's")
    mode.add_argument("--insecure", action="store_true", help="plain gRPC")
    parser.add_argument("--only", help="run only the scenarios whose name contains this text")
    parser.add_argument("--extra", action="store_true",
                        help="also run the scenarios our servers do not pass yet: 1.2's two-facility `request` "
                             "(a consumer AppCtrl Hello) and bytes through the path (needs the relay engine)")
    args = parser.parse_args()
    pem = None
    if args.cert:
        pem = b""
        for path in args.cert:
            with open(path, "rb") as f:
                pem += f.read().rstrip(b"\n") + b"\n"
    prod = Facility("producer", args.prod, pem)
    cons = Facility("consumer", args.cons, pem)
    passed = failed = 0
    for name, fn, extra in SCENARIOS:
        if (extra and not args.extra) or (args.only and args.only not in name):
            continue
        scene = Scene()
        started = time.monotonic()
        try:
            fn(scene, prod, cons)
            passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.2f} s)", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {describe(e)}", flush=True)
        finally:
            scene.cleanup()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
