# syntax=docker/dockerfile:1
# edgegate: a Daytona custom region's preview proxy and SSH gateway in one image.
#
#   docker build -t edgegate .
#   docker run --rm -p 4000:4000 -p 2222:2222 \
#       -e PROXY_API_KEY=dtn_... -e DAYTONA_API_URL=https://app.daytona.io/api edgegate
#
# docs/deploy.md has the whole deployment (docker-compose.yml, DNS, TLS, keys).

# --- build -------------------------------------------------------------------------------
FROM debian:12 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        g++ cmake ninja-build ccache pkg-config \
        libboost1.81-all-dev libssl-dev libnghttp2-dev libssh-dev libhiredis-dev \
        libspdlog-dev catch2 libjemalloc-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
ARG CMAKE_BUILD_TYPE=RelWithDebInfo
ENV CCACHE_DIR=/root/.cache/ccache
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$CMAKE_BUILD_TYPE" -DEDGE_TESTS=OFF \
    && cmake --build build \
    && install -D -s -m 755 build/edgegate /out/edgegate

# The runtime stage installs exactly the Debian packages that own the libraries the binary
# links, so a library added to the build is never missing at run time.
RUN ldd /out/edgegate | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
    | while read -r lib; do \
        dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" \
            || { echo "no Debian package owns $lib" >&2; exit 1; }; \
      done \
    | cut -d: -f1 | sort -u >/out/runtime-packages \
    && cat /out/runtime-packages

# --- runtime -----------------------------------------------------------------------------
FROM debian:12-slim
COPY --from=build /out/runtime-packages /usr/share/edgegate/runtime-packages
# curl is for the health probe only; ca-certificates for https:// to the Daytona API.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl $(cat /usr/share/edgegate/runtime-packages) \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin edgegate

COPY --from=build /out/edgegate /usr/local/bin/edgegate

# GET /health on the base host (Host: localhost has no "{port}-{id}." label), over https when
# edgegate terminates TLS itself.
COPY --chmod=755 <<'EOF' /usr/local/bin/edgegate-healthcheck
#!/bin/sh
case "${ENABLE_TLS:-false}" in 1|t|T|true|TRUE|True) scheme=https ;; *) scheme=http ;; esac
case "${BIND_ADDRESS:-0.0.0.0}" in
    0.0.0.0) addr=127.0.0.1 ;;
    ::) addr='[::1]' ;;
    *:*) addr="[$BIND_ADDRESS]" ;;
    *) addr=$BIND_ADDRESS ;;
esac
exec curl --fail --silent --show-error --insecure --max-time 3 --output /dev/null \
    --header "Host: localhost" "$scheme://$addr:${PROXY_PORT:-4000}/health"
EOF

ENV PROXY_PORT=4000 \
    SSH_GATEWAY_PORT=2222 \
    BIND_ADDRESS=0.0.0.0 \
    LOG_LEVEL=info
# A numeric user, so that orchestrators enforcing non-root can verify it.
USER 10001:10001
EXPOSE 4000 2222
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/edgegate-healthcheck"]
ENTRYPOINT ["/usr/local/bin/edgegate"]
