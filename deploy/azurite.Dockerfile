# Azurite's blob service, pinned by the repository's package-lock.json (3.35.0, the newest that runs on Node.js 20).
FROM node:20-slim

WORKDIR /opt/azurite
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && mkdir -p /data

ENV PATH=/opt/azurite/node_modules/.bin:$PATH
EXPOSE 10000
CMD ["azurite-blob", "--blobHost", "0.0.0.0", "--blobPort", "10000", "--location", "/data", \
     "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
