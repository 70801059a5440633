# syntax=docker/dockerfile:1
#
# The credshift image: one static-ish binary (glibc only, rustls, bundled
# SQLite) on distroless, as a non-root user. The same image runs
# `credshift controller` and `credshift serve` (see manifests/).
#
#   docker build -t REGISTRY/credshift:0.1.0 .
#
# The build context is an allowlist (.dockerignore): Cargo.toml, Cargo.lock,
# src/, migrations/ (embedded by sqlx::migrate!), api/ (openapi.json) and
# data/ (the password blocklist), both embedded by include_str!. tests/deploy.rs builds the binary from exactly
# that context with the `cargo build` command below and runs it.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src
COPY src ./src
COPY migrations ./migrations
COPY api ./api
COPY data ./data
# The crates are in the layer above (no cache mount over them); the target
# dir is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release --bin credshift \
    && install -D -m 0755 target/release/credshift /out/credshift

# glibc + libgcc_s, nothing else: no shell, no package manager.
# `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/credshift /usr/local/bin/credshift
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/credshift"]
CMD ["--help"]
