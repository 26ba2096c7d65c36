# syntax=docker/dockerfile:1
# guise in a container: a Rust build stage, then a slim Debian runtime with
# the binary and the configuration reference. See docs/operations.md.
#
#   docker build -t guise .
#   docker run --rm --env-file guise.env \
#     -v "$PWD/guise.yaml:/etc/guise/guise.yaml:ro" \
#     -p 8080:8080 -p 127.0.0.1:9090:9090 --stop-timeout 45 guise
#
# The shipped /etc/guise/guise.yaml is the configuration reference: it
# listens on 127.0.0.1, which is unreachable from outside the container.
# Mount your own file, with listeners on 0.0.0.0.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# pingora's zlib-ng build needs cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between
# builds; the binary is copied out of the cached target folder. Stripping
# the debug info (the release profile keeps it) leaves symbol names for
# backtraces and takes the binary from ~120 MB to ~24 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin guise \
 && strip --strip-debug target/release/guise \
 && install -m 0755 target/release/guise /usr/local/bin/guise

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 guise \
 && useradd --system --uid 10001 --gid guise --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin guise
COPY --from=build /usr/local/bin/guise /usr/local/bin/guise
COPY config/ /etc/guise/
# 8080 HTTP, 8443 HTTPS, 9090 operations (/metrics, /healthz, /readyz),
# as far as the configuration puts them there.
EXPOSE 8080 8443 9090
USER 10001:10001
# SIGTERM drains (docs/operations.md); give `docker stop` longer than
# server.grace_period_seconds + server.shutdown_timeout_seconds, e.g.
# --stop-timeout 45. No HEALTHCHECK: the image has no HTTP client, and
# orchestrators probe /healthz and /readyz on the operations port anyway.
STOPSIGNAL SIGTERM
ENTRYPOINT ["guise"]
CMD ["run", "--config", "/etc/guise/guise.yaml"]
