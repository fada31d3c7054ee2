# Tessera gateway image: a release build on Debian, run as an unprivileged
# user (uid 10001).
#   docker build -t tessera .
# With Redis (TESSERA_REDIS_URL) the gateway writes no file at all, so the
# container can run with a read-only root filesystem; signing keys live in
# Redis, encrypted with the key-encryption key given as TESSERA_KEK or in a
# file named by TESSERA_KEK_FILE. /etc/tessera/keys is empty: mount PEM
# files there to import them into an empty store on first start.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# What `cargo build` reads: the manifest and lock file, the sources, the
# console's templates (askama.toml points into src/), and every target the
# manifest declares without a path (benches/, examples/): cargo refuses a
# manifest whose targets are missing, even to build one binary.
COPY Cargo.toml Cargo.lock askama.toml ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --profile production --locked --bin tessera

FROM debian:bookworm-slim
# curl serves the HEALTHCHECK only. Debian's point releases replace
# package versions, so they are not pinned here; the base image is.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tessera \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tessera --no-create-home tessera \
 && mkdir -p /var/lib/tessera/data /etc/tessera/keys \
 && chown -R 10001:10001 /var/lib/tessera /etc/tessera/keys
COPY --from=build /src/target/production/tessera /usr/local/bin/tessera
USER 10001:10001
# The embedded store's default place (used when TESSERA_REDIS_URL is
# unset); mount a volume there to keep it.
ENV TESSERA_LISTEN=0.0.0.0:8080 \
    TESSERA_DATA_DIR=/var/lib/tessera/data \
    TESSERA_KEYS_DIR=/etc/tessera/keys \
    TESSERA_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["tessera"]
CMD ["serve"]
