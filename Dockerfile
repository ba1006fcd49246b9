# syntax=docker/dockerfile:1
# pgsplit container image: built in one stage, run as a non-root user from a slim image.
#
#   docker build -t pgsplit .
#   docker run --rm -p 6432:6432 -p 9930:9930 \
#       -e PGSPLIT_PRIMARY=db-primary:5432 -e PGSPLIT_REPLICAS=db-replica:5432 \
#       -v "$PWD/proxy.toml:/etc/pgsplit/proxy.toml:ro" pgsplit
#
# Inside the container pgsplit listens on 0.0.0.0:6432 (clients) and 0.0.0.0:9930 (dashboard,
# /stats, /metrics, /health): set `stats.token` in proxy.toml before publishing 9930 beyond a
# trusted network. The baked-in proxy.toml is the repository's documented defaults (users
# app/app_md5); mount your own over it.

# ---- build --------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
# pg_query's build script compiles libpg_query (C, with `cc`) and generates bindings with
# bindgen, which loads libclang; protoc is optional (prebuilt protobuf bindings are used without it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so editing pgsplit's own code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for b in router auth; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked \
 && rm -rf src benches
COPY . .
# Touch the sources so cargo rebuilds pgsplit itself rather than the placeholder above.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin pgsplit \
 && install -D -m 0755 target/release/pgsplit /out/pgsplit

# ---- run ----------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system pgsplit \
 && useradd --system --gid pgsplit --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgsplit
COPY --from=build /out/pgsplit /usr/local/bin/pgsplit
COPY --chown=root:pgsplit --chmod=0640 proxy.toml /etc/pgsplit/proxy.toml
ENV PGSPLIT_LISTEN=0.0.0.0:6432 \
    PGSPLIT_STATS_LISTEN=0.0.0.0:9930
USER pgsplit:pgsplit
EXPOSE 6432 9930
# /health needs no token and answers while the process serves (/ready also needs the primary).
# bash's /dev/tcp, so the image needs no HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9930 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pgsplit"]
CMD ["serve", "--config", "/etc/pgsplit/proxy.toml"]
