# The service image: built in one stage, run in a small Debian one as a non-root user. The agent
# image is separate (docker/agent.Dockerfile, named by AGENT_IMAGE).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin amp-orchestrator

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data --shell /usr/sbin/nologin amp \
 && mkdir -p /data && chown amp /data
COPY --from=build /src/target/release/amp-orchestrator /usr/local/bin/amp-orchestrator
USER amp
WORKDIR /data
ENV PORT=3000 HOST=0.0.0.0 DATABASE_URL=sqlite:///data/amp-orchestrator.sqlite
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/amp-orchestrator"]
CMD ["serve"]
