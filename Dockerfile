# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
# The commit `flowlytix_build_info` reports, for build contexts where git cannot tell (a
# worktree's .git is a pointer to elsewhere): `--build-arg FLOWLYTIX_GIT_COMMIT=$(git rev-parse --short=12 HEAD)`.
ARG FLOWLYTIX_GIT_COMMIT=
COPY . .
RUN cargo build --release --bin flowlytix

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/flowlytix --create-home flowlytix \
    && install -d -o flowlytix -m 0700 /var/lib/flowlytix/keys /var/lib/flowlytix/data
COPY --from=build /src/target/release/flowlytix /usr/local/bin/flowlytix
USER flowlytix
WORKDIR /var/lib/flowlytix
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8000/livez || exit 1
ENTRYPOINT ["/usr/local/bin/flowlytix"]
CMD ["serve"]
