#!/usr/bin/env python3
"""Calls a control server that checks tokens the way SciStream 1.2's Python clients call it
(grpcio, `authorization` metadata), and checks each answer's gRPC code.

    auth_12.py --s2cs HOST:PORT --cert PEM --token GOOD --wrong-scope TOKEN

GOOD must be a token of the facility's scope; TOKEN one of another scope. Prints one line per
check and a final `N passed, M failed`; exits 1 on any failure.
"""

import argparse
import sys
import uuid

import proto_stubs

pb2, pb2_grpc = proto_stubs.load()
import grpc  # noqa: E402  (after the dependency check in proto_stubs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s2cs", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--wrong-scope", required=True)
    args = parser.parse_args()
    with open(args.cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    stub = pb2_grpc.ControlStub(grpc.secure_channel(args.s2cs, creds))

    def req(metadata):
        msg = pb2.Request(uid=str(uuid.uuid4()), role="CONS", num_conn=1, rate=10000)
        return stub.req(msg, metadata=metadata, timeout=20)

    def release_unknown(metadata):
        return stub.release(pb2.Release(uid=str(uuid.uuid4())), metadata=metadata, timeout=20)

    checks = [
        ("REQ with the raw token, as 1.2 sends it", req, (("authorization", args.token),), None),
        ("REQ with a Bearer token", req, (("authorization", "Bearer " + args.token),), None),
        ("REQ with INVALID_TOKEN (never logged in)", req, (("authorization", "INVALID_TOKEN"),),
         grpc.StatusCode.UNAUTHENTICATED),
        ("REQ without metadata", req, (), grpc.StatusCode.UNAUTHENTICATED),
        ("REQ with another scope's token", req, (("authorization", args.wrong_scope),),
         grpc.StatusCode.PERMISSION_DENIED),
        ("release of an unknown uid without a token", release_unknown, (("authorization", "INVALID_TOKEN"),),
         grpc.StatusCode.UNAUTHENTICATED),
        ("release of an unknown uid with the token", release_unknown, (("authorization", args.token),),
         grpc.StatusCode.NOT_FOUND),
    ]
    passed = failed = 0
    for name, call, metadata, want in checks:
        try:
            call(metadata)
            got = None
        except grpc.RpcError as e:
            got = e.code()
        if got == want:
            passed += 1
            print(f"PASS {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: expected {want}, got {got}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
