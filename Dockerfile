# Build stage: compiles the request-path modules with mypyc (setup.py) into a wheel.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY control_plane control_plane
COPY data_plane data_plane
COPY tollgate tollgate
COPY migrations migrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /wheels /wheels
COPY alembic.ini ./
COPY examples examples
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The worker's cache dir (snapshot cache + usage spool; a named volume in docker-compose.yml): an empty
# named volume takes the owner of the image's directory, so it must exist here, owned by the runtime user.
# (On Kubernetes it is a PersistentVolumeClaim made writable by the pod's fsGroup; deploy/kubernetes.)
RUN mkdir -p /var/lib/tollgate/worker && chown -R 65534:65534 /var/lib/tollgate
# nobody:nogroup, by number: Kubernetes' runAsNonRoot can verify only a numeric user.  Nothing writes
# to the image at run time (the manifests mount it read-only); every command is `tollgate ...`:
# control-plane 8001, worker 8000 + status 8100, migrate, apply, echo.
USER 65534:65534
EXPOSE 8000 8001 8100
CMD ["tollgate", "--help"]
