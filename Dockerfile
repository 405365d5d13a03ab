# Image for every hydra-sync role; docker-compose.yml picks the role with `command`.
FROM node:20-bookworm-slim
WORKDIR /app

COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY bench ./bench
COPY scripts ./scripts
COPY examples ./examples
RUN npm ci && npm prune --omit=dev

ENV NODE_ENV=production
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["start"]
