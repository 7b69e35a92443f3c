# The CPU image: the API and workers on the preview engine, with what serving needs and nothing
# more (no torch, no test tools). The real model's image is Dockerfile.cuda.
#   docker build -t framecast:cpu .
#   docker run -p 8000:8000 -v framecast-data:/data -e FRAMECAST_API_KEYS=my-key framecast:cpu
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/framecast
COPY pyproject.toml README.md ./
COPY src ./src
# PyAV's and Pillow's wheels carry their codecs (x264 included): no system packages needed.
RUN pip install --no-cache-dir "./[postgres,s3]" \
    && useradd --create-home --uid 10001 framecast \
    && mkdir /data \
    && chown framecast /data

USER 10001
ENV FRAMECAST_DATA_DIR=/data \
    FRAMECAST_HOST=0.0.0.0 \
    FRAMECAST_ENGINE=preview \
    FRAMECAST_LOG_FORMAT=json
VOLUME ["/data"]
# The API's port is FRAMECAST_PORT (8000 unless set). Set that, not `serve --port`: the health
# check reads it to know where to ask.
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FRAMECAST_PORT', '8000'), timeout=4)"]
CMD ["framecast", "serve"]
