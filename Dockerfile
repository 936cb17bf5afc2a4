# syntax=docker/dockerfile:1
#
# Strongroom: one static-ish binary on a slim Debian base, running as a non-root user.
#
#   docker build -t strongroom .
#   docker run --rm strongroom keygen
#   docker run --rm -e DATABASE_URL=... strongroom migrate
#   docker run -p 8443:8443 -e DATABASE_URL=... -e STRONGROOM_MASTER_KEY=... \
#     -e STRONGROOM_TLS_CERT=/tls/cert.pem -e STRONGROOM_TLS_KEY=/tls/key.pem \
#     -v "$PWD/tls:/tls:ro" strongroom

# --- build -----------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
# The slim image already has gcc and libc6-dev, which is all the C that ring and aws-lc-sys
# (through rustls/sqlx) need: aws-lc-sys builds with the cc crate, no cmake, no C++, and
# nothing links OpenSSL, so no pkg-config either. jemalloc (the binary's allocator) is built
# with its own configure script and make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked \
 && install -m 0755 target/release/strongroom /usr/local/bin/strongroom

# --- run -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strongroom \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin strongroom
COPY --from=builder /usr/local/bin/strongroom /usr/local/bin/strongroom
# The binary embeds the migrations; the image holds them too, for inspection and tooling.
COPY --from=builder /build/migrations /migrations
USER 10001:10001
EXPOSE 8443
ENTRYPOINT ["strongroom"]
# Listening on a non-loopback address, `serve` refuses plain HTTP: give it a certificate and key
# with STRONGROOM_TLS_CERT and STRONGROOM_TLS_KEY (mounted read-only), plus DATABASE_URL and
# STRONGROOM_MASTER_KEY. Only behind a TLS-terminating proxy may STRONGROOM_FORCE_PLAIN_HTTP=true
# be set instead.
CMD ["serve", "--listen", "0.0.0.0:8443"]
