# One image per binary of the workspace: BIN is one of users, products, orders, payments, gateway,
# operator (`make images` builds all six).
#
# Where the binary comes from (BINARIES):
#   builder  (default) compiled from source in a rust: image. GitHub Actions, a laptop, and
#            `docker compose up --build` use this:
#              docker build --build-arg BIN=gateway -t ghcr.io/ecom/ecom-gateway:0.1.0 .
#   prebuilt taken from dist/<BIN>/ of the build context, built on the host by `make images`: the
#            path for machines whose builds cannot reach crates.io (air-gapped). `make images`
#            stages the stripped binaries and builds with a context holding only them.
# RUNTIME_BASE is distroless/cc (glibc, CA certificates, no shell). Where it cannot be pulled,
# `make images` passes a stand-in made from Debian packages (scripts/docker-bases).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=builder

# Bookworm, like the distroless runtime (debian12): the binary needs no newer glibc than it has.
FROM ${RUST_IMAGE} AS builder
ARG BIN
ARG REVISION=""
WORKDIR /src
# sqlx checks its queries against the committed .sqlx/ data: no database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    ECOM_BUILD_REVISION=${REVISION}
COPY . .
# The registry and target caches survive between builds: the six images share one dependency build.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "${BIN}" \
    && cargo build --locked --release --bin "${BIN}" \
    && mkdir -p /out/usr/local/bin \
    && strip -o "/out/usr/local/bin/${BIN}" "target/release/${BIN}" \
    && ln -s "${BIN}" /out/usr/local/bin/ecom-entrypoint

# dist/<BIN>/usr/local/bin/{<BIN>,ecom-entrypoint -> <BIN>}, staged by `make images`.
FROM scratch AS prebuilt
ARG BIN
COPY dist/${BIN}/ /out/

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE}
ARG BIN
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE="https://example.invalid/ecom"
LABEL org.opencontainers.image.title="ecom-${BIN}" \
      org.opencontainers.image.description="ecom ${BIN}: part of the ecom e-commerce platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="ecom"
# /usr/local/bin/$BIN, and ecom-entrypoint pointing at it (an exec-form ENTRYPOINT cannot expand
# $BIN). Healthchecks and exec probes run `/usr/local/bin/ecom-entrypoint healthcheck`.
COPY --from=binaries /out/ /
# The `nonroot` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ecom-entrypoint"]
