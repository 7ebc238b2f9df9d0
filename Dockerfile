# syntax=docker/dockerfile:1
#
# The `tidings` image: one binary, every role (`api`, `edge`, `migrate`, `send`, `token`,
# `dev`), chosen by the command:
#
#   docker build -t tidings:dev --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse --short=12 HEAD)" .
#   docker run --rm tidings:dev api --help
#
# Stages: `chef` (the pinned Rust toolchain + cargo-chef) → `planner` (the dependency
# recipe) → `builder` (dependencies in their own cached layer, then the workspace) →
# `runtime` (Debian slim, non-root, the binary alone). The build needs neither protoc
# (vendored by protoc-bin-vendored) nor a database (sqlx queries are checked at run time,
# migrations are embedded).
#
# Keep RUST_VERSION equal to `channel` in rust-toolchain.toml: the build checks it.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG RUST_VERSION
# Pin the toolchain for every cargo call below: cargo-chef does not apply
# rust-toolchain.toml to `cook` reliably, and the file's clippy/rustfmt components are
# not needed to build. With the image's own toolchain nothing is downloaded.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
# Fail early, with a message, when the image's toolchain and the repository's pin drift.
RUN channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)" \
    && if [ "$channel" != "$RUSTUP_TOOLCHAIN" ]; then \
         echo "Dockerfile RUST_VERSION=$RUSTUP_TOOLCHAIN but rust-toolchain.toml pins $channel: update ARG RUST_VERSION" >&2; \
         exit 1; \
       fi \
    && cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The patched crates (`[patch.crates-io]` in Cargo.toml) are dependencies, not workspace
# members: the recipe does not carry them, so cook needs their source.
COPY vendor vendor
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock or vendor/ change.
RUN cargo chef cook --release --locked -p tidings --recipe-path recipe.json
COPY . .
# No .git in the context: the commit `tidings --version` and tidings_build_info report
# comes from the REVISION argument (git rev-parse --short=12 HEAD).
ARG REVISION=unknown
RUN TIDINGS_COMMIT="${REVISION}" cargo build --release --locked -p tidings \
    && cp target/release/tidings /usr/local/bin/tidings \
    && /usr/local/bin/tidings --version

FROM debian:bookworm-slim AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tidings" \
      org.opencontainers.image.description="Tidings: a horizontally scaled notification cluster (gRPC in, Server-Sent Events out)" \
      org.opencontainers.image.source="https://github.com/tidings-rs/tidings" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# ca-certificates: TLS to Postgres, NATS and the OTLP collector.
# curl: the HEALTHCHECK below (`tidings` has no health-check subcommand).
# Versions come from the pinned Debian release and its security updates; pinning exact
# package versions would break the build at the next Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 tidings \
    && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
         --shell /usr/sbin/nologin tidings

COPY --from=builder /usr/local/bin/tidings /usr/local/bin/tidings

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# 8080: edge (SSE, inbox REST, /healthz, /readyz, /metrics)
# 9090: api  (/healthz, /readyz, /metrics)
# 50051: api gRPC (NotificationService, grpc.health.v1)
EXPOSE 8080 9090 50051

# Liveness of whichever role runs, on the default ports: the api's HTTP port (9090)
# first, then the edge's (8080). With TIDINGS_API_HTTP_LISTEN or TIDINGS_EDGE_LISTEN on
# other ports, override the health check (compose `healthcheck:`, Kubernetes probes).
# One-shot commands (migrate, send, token) are not long-running: their health status
# does not matter.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:9090/healthz || curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8080/healthz || exit 1"]

# The roles handle SIGTERM themselves (an edge drains over TIDINGS_DRAIN_WINDOW, 20 s by
# default): give them that long before SIGKILL (`docker stop -t 30`, compose
# `stop_grace_period`, Kubernetes `terminationGracePeriodSeconds`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tidings"]
CMD ["--help"]
