# The gateway as a container image. Each instruction is one the test suite exercises
# (tests/integration/test_dockerfile.py): the wheel build and install, `gateway check`
# on the mounted config path, the HEALTHCHECK command against a running gateway, and
# the CMD itself.
#
#   docker build -t gateway .
#   docker run -p 8080:8080 -p 9901:9901 -v $PWD/config/gateway.yaml:/etc/gateway/gateway.yaml:ro gateway
#
# The config inside the container must listen on 0.0.0.0 (or [::]) to be reachable.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/gateway.yaml /etc/gateway/gateway.yaml
USER gateway
EXPOSE 8080 9901
ENV GATEWAY_ADMIN_URL=http://127.0.0.1:9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['GATEWAY_ADMIN_URL'] + '/healthz', timeout=2).status == 200 else 1)"]
CMD ["gateway", "run", "-c", "/etc/gateway/gateway.yaml"]
