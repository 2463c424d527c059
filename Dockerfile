FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY control_plane control_plane
COPY data_plane data_plane
COPY tollgate tollgate
COPY migrations migrations
COPY examples examples
RUN pip install --no-cache-dir .
USER nobody
