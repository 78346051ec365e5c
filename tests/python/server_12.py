#!/usr/bin/env python3
"""A stand-in for a SciStream 1.2 control server (S2CS), for testing our `s2uc` and `appctrl`
against a server that only speaks 1.2.

    server_12.py serve12 --port P [--hello-timeout S]

It implements only the four 1.2 rpcs, with 1.2's behaviour; every other rpc of the service
(listeners, status, list) answers UNIMPLEMENTED, as the generated servicer does by default:

- req stores the session and invents num_conn listeners 127.0.0.1:PORT (nothing is bound); it
  blocks until a Hello for that uid has arrived, for a producer's and a consumer's req alike, as
  the 1.2 server does (up to --hello-timeout, then the session is dropped and the call fails);
  it answers the listeners and the producer's listeners.
- hello records the producer's listeners and wakes the waiting req; a consumer's Hello is
  answered with the session's listeners.
- update and release answer an empty Response.
- As in 1.2, a req for a uid it holds, and any other call for a uid it does not hold, fail
  with UNKNOWN (1.2 raises an exception for both). App keys, credentials and tokens are ignored.

Insecure gRPC only. Prints `ready PORT` once listening, then one line per call it serves
(`req UID ROLE num_conn=N`, `hello UID ROLE key=absent|present prod_listeners=A,B`,
`update UID remote=A,B`, `release UID`; `RPC UID refused: WHY` for a refusal), flushed, so a
test can follow the conversation.
"""

import argparse
import itertools
import signal
import sys
import threading
from concurrent import futures

import proto_stubs

pb2, pb2_grpc = proto_stubs.load()
import grpc  # noqa: E402  (after the dependency check in proto_stubs)


_SAY = threading.Lock()


def say(line):
    # Calls are served on several threads: one line at a time, whole, so the test can read them.
    with _SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Control12(pb2_grpc.ControlServicer):
    """The four SciStream 1.2 rpcs; the base class answers the others UNIMPLEMENTED."""

    def __init__(self, hello_timeout, first_port):
        self.hello_timeout = hello_timeout
        self.ports = itertools.count(first_port)
        self.lock = threading.Lock()
        self.sessions = {}

    def wake_all(self):
        """Ends every waiting req (at shutdown)."""
        with self.lock:
            for entry in self.sessions.values():
                entry["hello"].set()

    def entry(self, uid, rpc):
        with self.lock:
            if uid not in self.sessions:
                # 1.2's ValidationException: reported to the client as UNKNOWN.
                say(f"{rpc} {uid} refused: unknown uid")
                raise RuntimeError(f"{rpc} request invalid, entry not found for uid '{uid}'")
            return self.sessions[uid]

    def req(self, request, context):
        with self.lock:
            if request.uid in self.sessions:
                say(f"req {request.uid} refused: uid exists")
                raise RuntimeError("Entry already found for uid")
            entry = {
                "role": request.role,
                "num_conn": request.num_conn,
                "listeners": [f"127.0.0.1:{next(self.ports)}" for _ in range(request.num_conn)],
                "prod_listeners": [],
                "hello": threading.Event(),
            }
            self.sessions[request.uid] = entry
        say(f"req {request.uid} {request.role} num_conn={request.num_conn}")
        if not entry["hello"].wait(self.hello_timeout):
            with self.lock:
                self.sessions.pop(request.uid, None)
            raise RuntimeError("Hello not received within the timeout period")
        return pb2.Response(listeners=entry["listeners"], prod_listeners=entry["prod_listeners"])

    def hello(self, request, context):
        entry = self.entry(request.uid, "hello")
        key = "present" if request.app_key else "absent"
        say(f"hello {request.uid} {request.role} key={key} prod_listeners={','.join(request.prod_listeners)}")
        if request.role == "PROD":
            entry["prod_listeners"] = list(request.prod_listeners)
            answer = pb2.AppResponse(message="Sending Prod listeners...")
        else:
            answer = pb2.AppResponse(message="Sending listeners...", listeners=entry["listeners"])
        entry["hello"].set()
        return answer

    def update(self, request, context):
        self.entry(request.uid, "update")
        say(f"update {request.uid} remote={','.join(request.remote_listeners)}")
        return pb2.Response()

    def release(self, request, context):
        self.entry(request.uid, "release")
        with self.lock:
            self.sessions.pop(request.uid, None)
        say(f"release {request.uid}")
        return pb2.Response()


def serve12(args):
    # 1.2 serves with ten worker threads.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    servicer = Control12(args.hello_timeout, args.first_port)
    pb2_grpc.add_ControlServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    if port == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    server.start()
    say(f"ready {port}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    stopped = server.stop(grace=0.5)
    servicer.wake_all()
    stopped.wait()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve12", help="serve the four SciStream 1.2 rpcs (insecure)")
    s.add_argument("--port", type=int, required=True, help="control port; 0 picks a free one")
    s.add_argument("--hello-timeout", type=float, default=180.0,
                   help="how long a producer's req waits for its Hello, seconds [180, as 1.2]")
    s.add_argument("--first-port", type=int, default=7100, help="first invented listener port")
    args = parser.parse_args()
    return serve12(args)


if __name__ == "__main__":
    sys.exit(main())
