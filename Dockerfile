# One image per binary of the workspace: BIN is one of users, products, orders, payments, gateway,
# operator (`make images` builds all six).
#
# Where the binary comes from (BINARIES):
#   builder  (default) compiled from source in a rust: image. GitHub Actions, a laptop, and
#            `docker compose up --build` use this:
#              docker build --build-arg BIN=gateway -t ghcr.io/ecom/ecom-gateway:0.1.0 .
#            The builder runs on the build machine's platform and cross-compiles for the image's
#            (TARGETARCH), so one buildx build makes both architectures without emulating rustc:
#              docker buildx build --platform linux/amd64,linux/arm64 --build-arg BIN=gateway .
#   prebuilt taken from dist/<BIN>/ of the build context, built on the host by `make images`: the
#            path for machines whose builds cannot reach crates.io (air-gapped). `make images`
#            stages the stripped binaries and builds with a context holding only them.
# RUNTIME_BASE is distroless/cc (glibc, CA certificates, no shell). Where it cannot be pulled,
# `make images` passes a stand-in made from Debian packages (scripts/docker-bases).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=builder

# Bookworm, like the distroless runtime (debian12): the binary needs no newer glibc than it has.
# BUILDPLATFORM and TARGETARCH are BuildKit's (a plain `docker build` sets both to the machine's).
FROM --platform=${BUILDPLATFORM} ${RUST_IMAGE} AS builder
ARG BIN
ARG REVISION=""
ARG TARGETARCH
WORKDIR /src
# sqlx checks its queries against the committed .sqlx/ data: no database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    ECOM_BUILD_REVISION=${REVISION}
# A C cross toolchain when the image's architecture is not the builder's (ring compiles C). Not
# pinned: the packages follow the rust image's Debian point release.
# hadolint ignore=DL3008
RUN set -eu; \
    host=$(dpkg --print-architecture); \
    if [ "${TARGETARCH:-$host}" != "$host" ]; then \
      case "${TARGETARCH}" in \
        amd64) gcc="gcc-x86-64-linux-gnu" ;; \
        arm64) gcc="gcc-aarch64-linux-gnu" ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
      esac; \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gcc" "libc6-dev-${TARGETARCH}-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi
COPY . .
# The registry and target caches survive between builds: the six images share one dependency build.
# Always --target <triple> with Debian's <gnu>-gcc/-ar/-strip (native builds too: Debian's gcc
# has the prefixed names), so a native and a cross build take the same path.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    test -n "${BIN}"; \
    case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; \
             export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=$gnu-gcc CC_x86_64_unknown_linux_gnu=$gnu-gcc \
                    AR_x86_64_unknown_linux_gnu=$gnu-ar ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; \
             export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=$gnu-gcc CC_aarch64_unknown_linux_gnu=$gnu-gcc \
                    AR_aarch64_unknown_linux_gnu=$gnu-ar ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    rustup target add "$triple"; \
    cargo build --locked --release --target "$triple" --bin "${BIN}"; \
    mkdir -p /out/usr/local/bin; \
    "$gnu-strip" -o "/out/usr/local/bin/${BIN}" "target/$triple/release/${BIN}"; \
    ln -s "${BIN}" /out/usr/local/bin/ecom-entrypoint

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
