# The production agent image (AGENT_IMAGE): git, a POSIX shell, Node and the Amp CLI, pinned. Its
# `amp` resolves to the CLI's executable, which the service copies into repositories' own images.
# Build: docker build -t amp-orchestrator-agent:latest -f docker/agent.Dockerfile docker
FROM debian:bookworm-slim
ARG AMP_CLI_VERSION=0.0.1790142911-g7618fb
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git nodejs npm openssh-client \
 && npm install -g "@ampcode/cli-linux-x64@${AMP_CLI_VERSION}" \
 && ln -s "$(npm root -g)/@ampcode/cli-linux-x64/amp" /usr/local/bin/amp \
 && npm cache clean --force \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/sh agent \
 && mkdir -p /workspace && chown agent:agent /workspace
USER agent
WORKDIR /workspace
ENV AMP_SKIP_UPDATE_CHECK=1
CMD ["sleep", "infinity"]
