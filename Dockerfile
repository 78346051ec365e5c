# syntax=docker/dockerfile:1
#
# The SciStream-rs gateway daemons as two small images from one build (docs/deploy.md,
# "Container"):
#
#   docker build --target s2cs -t scistream/s2cs:0.1.0 .    # the control server
#   docker build --target s2ds -t scistream/s2ds:0.1.0 .    # a data server node
#
# Without --target the last stage, s2cs, is built. Both run as the distroless image's
# unprivileged user (65532), read /etc/scistream/<daemon>.toml, serve metrics and health on
# 0.0.0.0:9464 (the health check asks /readyz there), and drain for --drain-timeout on SIGTERM:
# give `docker stop` more time than that (`docker run --stop-timeout 45`, compose's
# `stop_grace_period`).

# The builder and the runtime must be the same Debian release (bookworm, glibc 2.36): the
# binaries link glibc and libgcc dynamically, which distroless/cc provides.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# The workspace's members (cargo reads every member's manifest); .dockerignore keeps target/,
# .git and the rest out of the context.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY fsm fsm
COPY proto proto
COPY transport transport
COPY actors actors
COPY sim sim
COPY bins bins
COPY tests tests
# The release profile keeps line tables for profiling (debug = 1); the images do without them
# but keep the symbol names, so a backtrace stays readable.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p scistream-bins --bin s2cs --bin s2ds \
    && install -D -m 0755 -t /out/bin target/release/s2cs target/release/s2ds \
    && install -d -m 0700 -o 65532 -g 65532 /out/state

# A data server node. Its link port (5010), the relays' port range (5100-5199 in the example
# configuration) and metrics (9464); it keeps no state.
FROM gcr.io/distroless/cc-debian12:nonroot AS s2ds
COPY --from=build /out/bin/s2ds /usr/local/bin/s2ds
USER 65532:65532
EXPOSE 5010 5100-5199 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/s2ds", "health", "--metrics-addr", "127.0.0.1:9464"]
ENTRYPOINT ["/usr/local/bin/s2ds"]
CMD ["--config", "/etc/scistream/s2ds.toml", "--metrics-addr", "0.0.0.0:9464"]

# The control server. Its control port (5000) and metrics (9464); its session store in the
# volume /var/lib/scistream (owned by the unprivileged user, so a fresh named volume is too).
FROM gcr.io/distroless/cc-debian12:nonroot AS s2cs
COPY --from=build /out/bin/s2cs /usr/local/bin/s2cs
COPY --from=build --chown=65532:65532 /out/state /var/lib/scistream
USER 65532:65532
VOLUME ["/var/lib/scistream"]
EXPOSE 5000 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/s2cs", "health", "--metrics-addr", "127.0.0.1:9464"]
ENTRYPOINT ["/usr/local/bin/s2cs"]
CMD ["--config", "/etc/scistream/s2cs.toml", "--metrics-addr", "0.0.0.0:9464", "--state-dir", "/var/lib/scistream"]
