# syntax=docker/dockerfile:1
# The stsbridge image: built with the workspace's locked dependencies, run as uid 65532 from an
# empty base holding only what packaging/image-root.sh puts there (the binary, the C runtime it
# links, the CA roots, passwd entries): no shell, no package manager. The tests start the binary in
# the same tree, as uid 65532 with a read-only root and the Kubernetes example's mounts.
#
#   docker build --build-arg STSBRIDGE_GIT_REVISION="$(git rev-parse HEAD)" -t stsbridge:0.1.0 .
#   docker run --rm stsbridge:0.1.0 --version

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The checkout's .git is not sent (.dockerignore): the revision --version prints comes from here.
ARG STSBRIDGE_GIT_REVISION=unknown
ENV STSBRIDGE_GIT_REVISION=${STSBRIDGE_GIT_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p stsbridge --bin stsbridge \
 && ./target/release/stsbridge --version \
 && packaging/image-root.sh target/release/stsbridge /image-root

FROM scratch
COPY --from=build /image-root/ /
ENV PATH=/usr/local/bin
USER 65532:65532
# The service's listener in the Kubernetes example (config/stsbridge.yaml: listen 0.0.0.0:8443).
EXPOSE 8443
ENTRYPOINT ["stsbridge"]
CMD ["serve", "--config", "/etc/stsbridge/config/stsbridge.yaml"]
