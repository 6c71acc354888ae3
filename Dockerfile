# The gateway as a container image. Every instruction is one the test suite exercises
# without Docker (tests/integration/test_dockerfile.py): the wheel build and install,
# and the CMD run as this image's user from an empty directory, with the variables
# and the mount of docs/operations.md ("Run the container"), proxying to a stub
# upstream while the HEALTHCHECK command passes against it. hadolint lints this file.
#
#   docker build -t gateway .
#   docker run ... gateway        (the full line: docs/operations.md)
#
# The config it runs, deploy/container/gateway.yaml, listens on 0.0.0.0:8080 (admin
# on 0.0.0.0:9901), takes UPSTREAM_URLS and ADMIN_TOKEN (both required) and more from
# the environment, and reads the JWT public key from /etc/gateway/keys/jwt.pub.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# A fixed numeric uid/gid: USER names it by number so that Kubernetes' runAsNonRoot
# can verify it and a host sees the same owner on mounted files.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/container/gateway.yaml /etc/gateway/gateway.yaml
USER 10001:10001
EXPOSE 8080 9901
ENV GATEWAY_ADMIN_URL=http://127.0.0.1:9901
# /healthz needs no admin token: it says "this process serves", which is what a
# restart decision needs. Readiness (/readyz) is for load balancers, with the token.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['GATEWAY_ADMIN_URL'] + '/healthz', timeout=2).status == 200 else 1)"]
CMD ["gateway", "run", "-c", "/etc/gateway/gateway.yaml"]
