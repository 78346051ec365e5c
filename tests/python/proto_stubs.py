"""Python stubs of the `scistream.Control` service, generated at run time from the repository's
.proto (grpc_tools.protoc into a temporary folder), as SciStream 1.2's clients and server use
them. Shared by replay_12.py and server_12.py."""

import atexit
import importlib
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "proto", "scistream.proto"))

# Exit status when grpcio or grpcio-tools is missing (the Rust tests name the fix).
EXIT_MISSING_DEPS = 3


def load(proto=DEFAULT_PROTO):
    """Generates and imports the stubs of `proto`; returns (pb2, pb2_grpc)."""
    try:
        import grpc  # noqa: F401
        from grpc_tools import protoc
    except ImportError as e:
        print(f"missing Python dependency ({e}): run `bash tests/run.sh`, which installs grpcio and grpcio-tools",
              file=sys.stderr)
        sys.exit(EXIT_MISSING_DEPS)
    out = tempfile.mkdtemp(prefix="scistream12-stubs-")
    atexit.register(shutil.rmtree, out, True)
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{os.path.dirname(proto)}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        proto,
    ])
    if rc != 0:
        print(f"protoc failed ({rc}) on {proto}", file=sys.stderr)
        sys.exit(2)
    sys.path.insert(0, out)
    name = os.path.splitext(os.path.basename(proto))[0]
    return importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")
