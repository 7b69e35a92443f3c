#!/bin/sh
# The wheels a lent GPU machine lacks to run bench/gpu_hunyuan.py. Its image has torch,
# transformers, accelerate, tokenizers, safetensors and huggingface_hub, but no diffusers and
# no pydantic (framecast's settings), and it cannot reach PyPI. Run here, then carry the folder:
#
#   echo /.whl/ >> .git/info/exclude && bench/gpu_wheels.sh
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:src python3 bench/gpu_hunyuan.py --paths stock
#
# Pinned to what the test suite runs with (pyproject's ranges; versions from `make test`'s venv).
set -eu
dest=${1:-.whl}
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest" \
    diffusers==0.42.1 importlib_metadata==10.2.0 \
    pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 \
    python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0
ls -l "$dest"
