# The `challenge` service image: a release build on the official Rust image, shipped on a distroless
# glibc runtime. Builds with BuildKit and with the classic builder (hence no `RUN --mount`, no heredocs).
# Where no registry answers, `cargo xtask airgap-images` seeds both base images under these same names.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg GIT_SHA="$(git rev-parse HEAD)" \
#     --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t infra-challenge:0.1.0 .

# Base images by public name and version; override them to build from a mirror or a pinned digest.
# checkov:skip=CKV_DOCKER_7: FROM uses these build args, whose defaults carry explicit version tags
ARG BUILDER_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The version `docker build .` labels the image with when no --build-arg VERSION is given: the workspace
# version of Cargo.toml ([workspace.package]); `cargo xtask test`'s lint suite fails when the two differ.
ARG VERSION=0.1.0

# --- build stage: the Rust toolchain, used only to compile ------------------------------------------
FROM ${BUILDER_IMAGE} AS build
# One fixed directory so cargo's fingerprints (absolute paths) match between the two compile steps.
WORKDIR /src

# Dependency layer (the cargo-chef pattern without the tool): only the manifests and the lock file are
# copied, so this layer and the next stay cached until a dependency changes. Cargo loads every workspace
# member, so each gets its manifest; only `challenge` is built.
COPY Cargo.toml Cargo.lock ./
COPY crates/challenge/Cargo.toml crates/challenge/
COPY crates/deployer/Cargo.toml crates/deployer/
COPY crates/e2e/Cargo.toml crates/e2e/
COPY crates/otlp-events/Cargo.toml crates/otlp-events/
COPY xtask/Cargo.toml xtask/
# Empty stand-in sources for every member, then a release build of the dependencies alone (`--locked`:
# exactly the versions in Cargo.lock). The service's stand-in sources and artifacts are removed so its
# real sources are always compiled in the next step, whatever their timestamps.
RUN for member in crates/challenge crates/deployer crates/e2e crates/otlp-events xtask; do \
      mkdir -p "$member/src" && echo 'fn main() {}' > "$member/src/main.rs" && : > "$member/src/lib.rs"; \
    done \
 && cargo build --release --locked -p challenge \
 && rm -rf crates/challenge/src target/release/.fingerprint/challenge-* \
      target/release/deps/challenge-* target/release/deps/libchallenge-* target/release/challenge*

# Build metadata, declared only now so that a new commit or date never invalidates the dependency layer.
# VERSION takes the default declared before the first FROM.
ARG VERSION
ARG GIT_SHA=""
ARG BUILD_DATE=""
# The service's sources (the only layer a code change invalidates).
COPY crates/challenge crates/challenge
# The binary embeds version, git revision and build date (see crates/challenge/src/build_info.rs); an
# empty build argument is unset so the binary reports its own defaults instead of an empty string.
RUN if [ -n "$VERSION" ]; then export APP_VERSION="$VERSION"; fi \
 && if [ -z "$GIT_SHA" ]; then unset GIT_SHA; fi \
 && if [ -z "$BUILD_DATE" ]; then unset BUILD_DATE; fi \
 && cargo build --release --locked -p challenge \
 && ./target/release/challenge version

# --- runtime stage: glibc, CA certificates, time zones and a nonroot user; no shell, no package manager
FROM ${RUNTIME_IMAGE}
# The same build metadata again (a stage sees only the arguments it declares); VERSION as above.
ARG VERSION
ARG GIT_SHA=""
ARG BUILD_DATE=""
ARG SOURCE="https://example.invalid/infra-challenge"
# OCI annotations: what this image is, from which commit, and when it was built.
LABEL org.opencontainers.image.title="infra-challenge" \
      org.opencontainers.image.description="JSON HTTP API for tasks, backed by MySQL" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE}"
# The binary (linked against the runtime's glibc) is all the service needs.
COPY --from=build /src/target/release/challenge /usr/local/bin/challenge
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd (65532 = nonroot).
USER 65532:65532
# Structured logs for the log collector; the port the whole project agrees on
# (docs/ARCHITECTURE.md, "Names").
ENV PORT=8000 \
    LOG_FORMAT=json
EXPOSE 8000
# There is no shell or curl here: the binary itself asks its own /readyz (database reachable, migrated).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/challenge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/challenge"]
# Apply pending migrations (under a lock, so replicas may start together) and seed an empty table.
CMD ["serve", "--migrate", "--seed"]
