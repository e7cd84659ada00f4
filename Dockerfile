# syntax=docker/dockerfile:1
# Multi-stage build: compile with the full Rust toolchain, run on a slim Debian with one binary.
# Queries are checked against the committed .sqlx/ data, so the build needs no database.

FROM rust:1.95-bookworm AS build
WORKDIR /app
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock build.rs ./
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY src ./src
# Compiled into the binary: the console's templates and stylesheet, the import examples it offers.
COPY templates ./templates
COPY docs/examples ./docs/examples
# Declared in Cargo.toml, so the manifest needs it even for the binary alone.
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target \
    cargo build --release --locked --bin partner-catalog \
    && cp target/release/partner-catalog /usr/local/bin/partner-catalog

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home partner-catalog
COPY --from=build /usr/local/bin/partner-catalog /usr/local/bin/partner-catalog
USER partner-catalog
ENV BIND=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
# Migrations are embedded in the binary; `serve` creates the database and applies them.
ENTRYPOINT ["partner-catalog"]
CMD ["serve"]
