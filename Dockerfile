# Gradient Explosion Lab: the dashboard in a container.
#   docker build -t gradient-explosion-lab .
#   docker run --rm -p 127.0.0.1:8501:8501 gradient-explosion-lab
# Optional: --build-arg TORCH_INDEX_URL=<a CPU-only PyTorch wheel index> installs torch from
# there first, which keeps the image free of the CUDA libraries. Empty by default.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin lab

WORKDIR /app

COPY requirements.txt ./
RUN set -eux; \
    if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' requirements.txt)"; \
    fi; \
    pip install -r requirements.txt

COPY --chown=lab:lab . .

USER lab

# The live charts load plotly.js from the app's static folder; put it there now rather than on first use.
RUN python -c "from components.plot import ensure_plotly_js; raise SystemExit(0 if ensure_plotly_js() else 1)"

# Runs are saved in a SQLite store; /app belongs to root, so the store lives in the user's home.
# Mount a volume there to keep runs across containers.
ENV GEL_DATA_DIR=/home/lab/data
RUN mkdir -p /home/lab/data
VOLUME ["/home/lab/data"]

EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4); sys.exit(0 if r.read().strip() == b'ok' else 1)"]

# Inside the container the server must listen on all interfaces; publish the port on
# 127.0.0.1 only (as above) unless you mean to expose it.
CMD ["streamlit", "run", "serve.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
