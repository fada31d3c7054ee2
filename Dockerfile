# Tessera gateway image: a release build on Debian, run as an unprivileged user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin tessera

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/tessera tessera \
 && mkdir -p /var/lib/tessera/data /etc/tessera/keys \
 && chown -R tessera /var/lib/tessera /etc/tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER tessera
ENV TESSERA_LISTEN=0.0.0.0:8080 \
    TESSERA_DATA_DIR=/var/lib/tessera/data \
    TESSERA_KEYS_DIR=/etc/tessera/keys \
    TESSERA_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["tessera"]
CMD ["serve"]
