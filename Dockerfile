# syntax=docker/dockerfile:1
#
# The consumer image: `stream-processor consume` runs the KCL MultiLangDaemon (Java) which runs one Python
# record processor per shard lease. Three stages: Maven fetches the KCL jars named by infra/kcl/pom.xml,
# a Python stage gathers every wheel at the versions and hashes requirements/kcl.txt locks (amazon-kclpy bundles
# its jars, taken from the Maven stage's repository instead of downloaded), and the runtime stage is
# python:3.11-slim with a headless Java 17, running as non-root. `consume` finds the jars inside the installed
# amazon_kclpy package (set STREAM_PROCESSOR_KCL_JARS or --kcl-jars to use others).
#
#   docker build -t stream-processor:0.1.0 .
#   docker run --rm stream-processor:0.1.0                     # consume --help
#   docker run --rm -e AWS_REGION=eu-west-1 stream-processor:0.1.0 consume --stream NAME --application APP
#
# Bookworm is pinned on purpose: it is the Debian release whose archive has openjdk-17-jre-headless.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG MAVEN_IMAGE=maven:3.9-eclipse-temurin-17

# --- 1. the KCL jars -----------------------------------------------------------------------------------
FROM ${MAVEN_IMAGE} AS kcl-jars
WORKDIR /build
COPY infra/kcl/pom.xml infra/kcl/pom.xml
# Fills /m2, a Maven repository layout that amazon-kclpy's build reads its jars from.
RUN mvn -q -B -Dmaven.repo.local=/m2 -f infra/kcl/pom.xml dependency:copy-dependencies \
 && ls infra/kcl/jars/*.jar > /dev/null

# --- 2. wheels ------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheels
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=kcl-jars /m2 /m2
WORKDIR /src
COPY requirements/kcl.txt requirements/kcl.txt
# The dependencies exactly as locked, every download checked against its hash. KCL_MVN_REPO_SEARCH_URL:
# amazon-kclpy's setup.py copies its jars from this repository into its wheel.
RUN KCL_MVN_REPO_SEARCH_URL=file:///m2/ pip wheel --wheel-dir /wheels --require-hashes -r requirements/kcl.txt
COPY pyproject.toml README.md LICENSE ./
COPY stream_processor ./stream_processor
RUN pip wheel --wheel-dir /wheels --no-deps . \
 && python -c "import glob, zipfile; w, = glob.glob('/wheels/amazon_kclpy-*.whl'); \
assert any(n.endswith('.jar') for n in zipfile.ZipFile(w).namelist()), 'amazon-kclpy wheel has no jars'"

# --- 3. runtime -----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The JVM the MultiLangDaemon runs on; nothing else from apt.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

# Exactly the wheels of the previous stage (checked there), nothing resolved again; pip check: none is missing.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --no-deps /wheels/*.whl \
 && pip check

# Non-root; its home is the only writable place the consumer needs (KCL properties, SQLite state).
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
USER 10001:10001
WORKDIR /home/app

ENTRYPOINT ["stream-processor"]
CMD ["consume", "--help"]
