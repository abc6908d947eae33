# One edgepool image for linux/amd64 and linux/arm64 (buildx; see `just image`).
#
# The builder runs on the build machine's own platform and cross-compiles to the target, so an
# arm64 image builds at native speed on an x86 laptop (no QEMU for rustc). The runtime is
# distroless cc (glibc, CA certificates, no shell, no package manager) as the nonroot user.
# No model inside: workers fetch it by name from NATS (docs/deploy-microk8s.md).

ARG RUST_VERSION=1.91

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
WORKDIR /src
# The cross linker for the other architecture (both are installed; one is unused). Not pinned:
# Debian's security updates replace exact versions, and the toolchain is only used to link.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-x86-64-linux-gnu libc6-dev-amd64-cross \
    && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TERM_COLOR=never
COPY . .
# Cargo's registry and target dir are cache mounts: rebuilds only compile what changed. The
# release profile strips debug info (Cargo.toml), so the binary copied below is what devices need.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=edgepool-target-${TARGETARCH} \
    case "$TARGETARCH" in \
        amd64) triple=x86_64-unknown-linux-gnu ;; \
        arm64) triple=aarch64-unknown-linux-gnu ;; \
        *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
    && rustup target add "$triple" \
    && cargo build --release --locked -p edgepool --target "$triple" \
    && cp "target/$triple/release/edgepool" /edgepool

# A static ffmpeg for the camera image (`--target camera`): the binary of the PyPI wheel
# imageio-ffmpeg that `cargo xtask tools` installs, for the target architecture (ffmpeg 9.0.2,
# manylinux_2_28, so it runs on distroless's glibc). Downloaded, never executed here.
FROM --platform=$BUILDPLATFORM python:3.12-slim-bookworm AS ffmpeg
ARG TARGETARCH
ARG IMAGEIO_FFMPEG_VERSION=0.8.1
RUN case "$TARGETARCH" in \
        amd64) plat=manylinux_2_28_x86_64 ;; \
        arm64) plat=manylinux_2_28_aarch64 ;; \
        *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
    && pip download --no-cache-dir --no-deps --only-binary=:all: --platform "$plat" \
        "imageio-ffmpeg==${IMAGEIO_FFMPEG_VERSION}" -d /wheel \
    && python -m zipfile -e /wheel/*.whl /unpacked \
    && cp /unpacked/imageio_ffmpeg/binaries/ffmpeg-linux-* /ffmpeg \
    && chmod 0755 /ffmpeg

# The camera image: edgepool plus ffmpeg, for `edgepool camera` on RTSP, HTTP and V4L2 sources
# (k8s/components/cameras). Build it with `--target camera`; the default image below has no
# ffmpeg, so workers and the sink do not carry its 170 MB.
FROM gcr.io/distroless/cc-debian12:nonroot AS camera
COPY --from=builder /edgepool /edgepool
COPY --from=ffmpeg /ffmpeg /usr/local/bin/ffmpeg
USER 65532:65532
EXPOSE 9101
ENTRYPOINT ["/edgepool"]

# The default image: every role but the video cameras.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /edgepool /edgepool
# distroless's nonroot user; the pods' runAsUser matches.
USER 65532:65532
# Worker and sink HTTP (/metrics, /healthz, /readyz) as deployed in k8s/.
EXPOSE 9100 9090
ENTRYPOINT ["/edgepool"]
