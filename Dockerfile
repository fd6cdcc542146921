# syntax=docker/dockerfile:1
# The coder-guard image: the release binary on distroless, run as a non-root user.
#
#   docker build -t ghcr.io/coder/coder-guard:0.1.0 .
#
# Multi-stage: the builder compiles with the toolchain pinned in rust-toolchain.toml; the
# runtime stage holds only the binary, glibc and libgcc (distroless "cc"), no shell and no
# package manager. Builder and runtime use the same Debian release (12, bookworm), so the
# binary links against the glibc it runs with.

# Keep equal to `channel` in rust-toolchain.toml (tests/helm_chart.rs checks it).
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# rust-toolchain.toml is left out on purpose: the image's toolchain is the pinned one, and the
# file would make rustup download clippy and rustfmt, which a release build does not need.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# No debug info in the image: 27 MB instead of about 150 MB with Cargo.toml's line tables
# (panics and backtraces still name functions).
ENV CARGO_PROFILE_RELEASE_DEBUG=false
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin coder-guard \
 && install -D -m 0755 target/release/coder-guard /out/coder-guard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/coder-guard /usr/local/bin/coder-guard
# distroless' "nonroot" user; the chart's securityContext runs as the same UID and GID.
USER 65532:65532
# The webhook (HTTPS) and admin (probes, metrics) ports of `coder-guard serve`.
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/coder-guard"]
CMD ["--help"]
