# syntax=docker/dockerfile:1
# One image per binary of the workspace:
#   docker build --build-arg BIN=gateway -t ghcr.io/ecom/ecom-gateway:0.1.0 .
# BIN is one of users, products, orders, payments, gateway, operator (`make kind-up` builds all six).

# Bookworm, like the distroless runtime below (debian12): the binary needs no newer glibc than it has.
FROM rust:1.95-bookworm AS builder
ARG BIN
WORKDIR /src
# sqlx checks its queries against the committed .sqlx/ data: no database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# The registry and target caches survive between builds: the six images share one dependency build.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "${BIN}" \
    && cargo build --locked --release --bin "${BIN}" \
    && mkdir -p /out/usr/local/bin \
    && cp "target/release/${BIN}" "/out/usr/local/bin/${BIN}" \
    && ln -s "${BIN}" /out/usr/local/bin/ecom-entrypoint

FROM gcr.io/distroless/cc-debian12:nonroot
ARG BIN
LABEL org.opencontainers.image.source="https://example.invalid/ecom" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.title="ecom-${BIN}"
# /usr/local/bin/$BIN, and ecom-entrypoint pointing at it (an exec-form ENTRYPOINT cannot expand $BIN).
COPY --from=builder /out/ /
# The image's `nonroot` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ecom-entrypoint"]
