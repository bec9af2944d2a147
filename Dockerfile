# syntax=docker/dockerfile:1
# Build: compile TypeScript and bundle the CLI with the dev dependencies, then keep only what runs.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    BROKER_HOST=0.0.0.0 \
    BROKER_PORT=8080 \
    BROKER_STATE_DIR=/var/lib/defender-token-broker
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
# The bundle holds the broker and nearly all it uses; yaml, ioredis and pino-pretty come from
# node_modules when a YAML file, a shared budget or a terminal needs them.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/bin ./dist/bin
COPY config ./config
# What the broker makes once and must find again (the egress proxy's CA, the broker-token key):
# a volume, owned by the broker's user, so a restart or a new image keeps it.
RUN mkdir -p /var/lib/defender-token-broker && chown node:node /var/lib/defender-token-broker && chmod 700 /var/lib/defender-token-broker
VOLUME /var/lib/defender-token-broker
USER node
EXPOSE 8080
# Node itself probes: the image has no curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.BROKER_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: Node is PID 1 and gets SIGTERM itself; it drains in-flight requests and exits 0.
ENTRYPOINT ["node", "dist/bin/defender-token-broker.js"]
CMD ["serve"]
