# syntax=docker/dockerfile:1
# dohgate's container image: a release build in the official Rust image, run from Debian slim as
# a non-root user with no capability. See docs/deployment.md.
#
#   docker build --build-arg GIT_SHA="$(git rev-parse --short HEAD)" -t dohgate .
#   docker build --build-arg FEATURES=fips -t dohgate:fips .     # DoH-FIPS (FIPS 140-3 module)
#   docker run -p 53:5353/udp -p 53:5353/tcp -p 443:8443 dohgate
#
# The build and run stages use the same Debian release, so the binary finds the glibc it was
# linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Cargo features, comma-separated: "fips" builds the DoH-FIPS variant.
ARG FEATURES=
# The commit, for dohgate_build_info (the build context has no .git).
ARG GIT_SHA=
# The FIPS module (aws-lc-fips-sys) is built with CMake and Go; nothing else needs them.
# Versions are not pinned: the Debian release is, and it only ships security fixes.
# hadolint ignore=DL3008
RUN case ",${FEATURES}," in \
      *,fips,*) apt-get update \
        && apt-get install -y --no-install-recommends cmake golang-go \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac
WORKDIR /src
COPY . .
# The release build README.md describes, from the committed Cargo.lock. The caches keep
# downloaded crates and compiled dependencies between image builds; the binary is copied out
# of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    DOHGATE_GIT_SHA="${GIT_SHA}" \
      cargo build --release --locked -p dohgate ${FEATURES:+--features "${FEATURES}"} \
    && install -m 0755 target/release/dohgate /usr/local/bin/dohgate
# A FIPS image whose binary lacks the module must not be built: --version says "(fips)".
RUN /usr/local/bin/dohgate --version \
    && case ",${FEATURES}," in \
      *,fips,*) /usr/local/bin/dohgate --version | grep -q '(fips)' ;; \
    esac

FROM debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="dohgate" \
      org.opencontainers.image.description="DNS gateway: Do53, DoH and DoH-FIPS in, Route 53-style forwarding rules out" \
      org.opencontainers.image.source="https://github.com/dohgate/dohgate" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 65532 dohgate \
    && useradd --system --uid 65532 --gid dohgate --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin dohgate
# The system roots, for DoH targets without a ca_file.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/dohgate /usr/bin/dohgate
COPY deploy/container/dohgate.toml /etc/dohgate/dohgate.toml
USER 65532:65532
# Unprivileged ports inside (deploy/container/dohgate.toml): Do53, DoH, admin. Publish them on
# 53 and 443.
EXPOSE 5353/udp 5353/tcp 8443/tcp 9153/tcp
# /healthz on the admin listener, with bash alone: the image carries no HTTP client (curl
# would bring a TLS and LDAP stack for one GET). Kubernetes ignores HEALTHCHECK and uses the
# probes in deploy/kubernetes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9153 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["/usr/bin/dohgate"]
CMD ["--config", "/etc/dohgate/dohgate.toml"]
