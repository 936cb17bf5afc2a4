# syntax=docker/dockerfile:1
#
# Strongroom: the stripped release binary (about 21 MB) on distroless cc-debian12 (glibc and
# libgcc_s, CA certificates; no shell, no package manager), running as uid/gid 65532.
#
# The whole thing, PostgreSQL and a TLS vault with a policy file, is compose.yaml at the top of
# the repository: see the README's "Docker Compose" section. By hand, with the database and its
# two roles made as the README's production section says:
#
#   docker build -t strongroom .
#   docker volume create strongroom-secrets
#   docker run --rm -v strongroom-secrets:/var/lib/strongroom strongroom \
#     keygen --out /var/lib/strongroom/master.key --keep-existing
#   docker run --rm -e DATABASE_URL=postgres://strongroom_owner:…@db/strongroom strongroom migrate
#   docker run -d -p 8443:8443 -e DATABASE_URL=postgres://strongroom_app:…@db/strongroom \
#     -e STRONGROOM_MASTER_KEY_FILE=/var/lib/strongroom/master.key \
#     -v strongroom-secrets:/var/lib/strongroom:ro \
#     -e STRONGROOM_TLS_CERT=/tls/cert.pem -e STRONGROOM_TLS_KEY=/tls/key.pem -v "$PWD/tls:/tls:ro" \
#     -e STRONGROOM_POLICY_FILE=/etc/strongroom/policies.toml \
#     -v "$PWD/policies.toml:/etc/strongroom/policies.toml:ro" strongroom
#
# The process runs as uid 65532, so key.pem (and the policy file) must be readable by that uid.
# The health check calls https://localhost:8443 trusting /tls/ca.pem: with a certificate that
# does not name localhost, or a CA kept elsewhere, set STRONGROOM_HEALTH_URL and
# STRONGROOM_HEALTH_CACERT to match.

# --- chef: the toolchain, make and cargo-chef -------------------------------------------------
FROM rust:1.95-slim-bookworm AS chef
# The slim image already has gcc and libc6-dev, which is all the C that ring and aws-lc-sys
# (through rustls/sqlx) need: aws-lc-sys builds with the cc crate, no cmake, no C++, and
# nothing links OpenSSL, so no pkg-config either. jemalloc (the binary's allocator) is built
# with its own configure script and make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
# Pinned, so that a new cargo-chef cannot change the dependency layer under an unchanged lock.
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
# Without debug info and symbols the binary is 21 MB instead of 120 MB, at the price of
# backtraces without function names. Set for `cook` and `build` alike: a profile that differed
# between them would compile every dependency again.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /build

# --- planner: the recipe (manifests, lock and the crate's targets) ----------------------------
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo chef prepare --recipe-path recipe.json

# --- builder ---------------------------------------------------------------------------------
FROM chef AS builder
# The dependency layer: rebuilt only when Cargo.toml or Cargo.lock change, not on every edit of
# src/ (the recipe is byte-identical then, so this layer comes from the cache).
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
# What the binary is built from: the sources, and the migrations and console files that it
# embeds at compile time (sqlx::migrate!, include_str!).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY console ./console
# The directories for the master key and the audit checkpoints are made here because the
# runtime image has no mkdir: a named volume mounted on one starts with its owner, so the
# non-root process can write there.
RUN cargo build --release --locked \
 && install -m 0755 target/release/strongroom /usr/local/bin/strongroom \
 && install -d -m 0700 /var/lib/strongroom /var/log/strongroom

# --- run -------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/strongroom /usr/local/bin/strongroom
# The binary embeds the migrations; the image holds them too, for inspection and tooling.
COPY --from=builder /build/migrations /migrations
COPY --from=builder --chown=65532:65532 /var/lib/strongroom /var/lib/strongroom
COPY --from=builder --chown=65532:65532 /var/log/strongroom /var/log/strongroom
# No VOLUME for them: an anonymous volume would hold a master key nobody knows to back up.
USER 65532:65532
EXPOSE 8443
# Exec form, as there is no shell to run a command string. The defaults fit compose.yaml (and
# the CMD below with a certificate naming localhost); override them to match another layout.
ENV STRONGROOM_HEALTH_URL=https://localhost:8443 \
    STRONGROOM_HEALTH_CACERT=/tls/ca.pem
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/strongroom", "health"]
ENTRYPOINT ["/usr/local/bin/strongroom"]
# Listening on a non-loopback address, `serve` refuses plain HTTP: give it a certificate and key
# with STRONGROOM_TLS_CERT and STRONGROOM_TLS_KEY (mounted read-only), plus DATABASE_URL and the
# master key (STRONGROOM_MASTER_KEY_FILE on a volume, or start sealed). Only behind a
# TLS-terminating proxy may STRONGROOM_FORCE_PLAIN_HTTP=true be set instead.
CMD ["serve", "--listen", "0.0.0.0:8443"]
