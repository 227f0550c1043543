# Dockerfile: deitc on NVIDIA's CUDA 13 images, ready to compile and train on a GPU machine.
#   docker build --build-arg DEITC_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t deitc .
#   docker run --gpus all -v "$PWD/data:/data" deitc deitc compile deit_small -o /data/deit_small
#   docker run --gpus all -v "$PWD/data:/data" deitc /data/deit_small train --data /data/train --epochs 10
# build: the devel image (CUDA headers, NVRTC) builds and installs deitc with scripts/install.sh,
#   the very commands CI runs (scripts/install_check.sh). runtime: NVIDIA's runtime image (its
#   CUDA libraries include NVRTC and cuBLASLt) plus the host compiler deitc's link step runs;
#   deitc in /opt/deitc (on PATH), the models by name, also under /opt/deitc/models.
ARG CUDA_TAG=13.0.0
FROM nvidia/cuda:${CUDA_TAG}-devel-ubuntu24.04 AS build
ARG DEITC_GIT_COMMIT=unknown
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu's package versions are not pinned (the archive drops old ones); the CUDA tag pins the base.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake make gcc g++ libyaml-dev protobuf-c-compiler libprotobuf-c-dev libonnx-dev \
      libjpeg-dev libpng-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN DEITC_GIT_COMMIT="${DEITC_GIT_COMMIT}" scripts/install.sh /opt/deitc /tmp/deitc-build

FROM nvidia/cuda:${CUDA_TAG}-runtime-ubuntu24.04 AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc g++ libc6-dev libyaml-0-2 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/deitc /opt/deitc
# the image checks itself: NVRTC found, both targets compile and link with what is here
RUN ln -s share/deitc/models /opt/deitc/models \
 && /opt/deitc/bin/deitc --version \
 && /opt/deitc/bin/deitc compile deit_tiny --target cuda --arch sm_90 -o /tmp/smoke_cuda \
 && /opt/deitc/bin/deitc compile deit_tiny --target emu --batch 1 -o /tmp/smoke_emu \
 && /tmp/smoke_emu info \
 && rm -rf /tmp/smoke_cuda /tmp/smoke_emu /root/.cache/deitc
ENV PATH=/opt/deitc/bin:${PATH}
WORKDIR /data
CMD ["deitc", "help"]
