#!/bin/sh
# The wheels a lent GPU machine lacks to run the GPU check (bench/gpu_check.sh: gpu_hunyuan.py
# and gpu_hunyuan15.py). Its image has torch, transformers, accelerate, tokenizers, safetensors
# and huggingface_hub, but no diffusers and no pydantic (framecast's settings), and it cannot
# reach PyPI. Run here, then carry the folder (docs/performance.md, "The GPU plan"):
#
#   grep -qsx /.whl/ .git/info/exclude || echo /.whl/ >> .git/info/exclude
#   bench/gpu_wheels.sh
#   # there: bash bench/gpu_check.sh "$OUT", which installs them first, as
#   #   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#   #       --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src
#
# HunyuanVideo 1.5 needs nothing more: diffusers 0.42.1 has its transformer, VAE and pipeline
# (models/transformers/transformer_hunyuan_video15.py, pipelines/hunyuan_video1_5/), and the
# benchmark builds the transformer alone (no Qwen2.5-VL, ByT5 or SigLIP; transformers 5.17 has
# those classes anyway).
# Pinned to what the test suite runs with (pyproject's ranges; versions from `make test`'s venv).
# Installed with --no-deps, so every requirement the image lacks or has too old is named:
# pydantic 2.14 and pydantic_core need typing_extensions >= 4.16 (the image is not known to have it), and
# importlib_metadata 10 imports lazy_importer. The image's transformers (5.17), tokenizers and
# huggingface_hub (1.x) ran the tiny benchmark and built the full-size model (on the meta
# device) here, so they are not carried.
set -eu
dest=${1:-.whl}
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest" \
    diffusers==0.42.1 importlib_metadata==10.2.0 \
    pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 \
    python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0 \
    typing_extensions==4.16.0 lazy-importer==0.1.0
ls -l "$dest"
