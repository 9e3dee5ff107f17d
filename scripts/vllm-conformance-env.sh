#!/usr/bin/env bash
# Build a Python that has vLLM's own code, for tests/vllm/test_vllm_conformance.py:
#   bash scripts/vllm-conformance-env.sh .cache/vllm-venv
# No GPU and no CUDA torch: `pip install --no-deps vllm==0.33.0` plus exactly the packages that the
# conformance probe's imports reach (vllm.config.speculative, the `vllm serve` argument parser and
# vllm.v1.spec_decode.metrics), found by importing them one missing module at a time:
#   cbor2 (vllm.utils.hashing), openai-harmony (entrypoints/mcp/tool_server), msgspec
#   (sampling_params), pybase64 (multimodal/media), uvloop (v1/utils), partial-json-parser
#   (tool_parsers), xgrammar + its apache-tvm-ffi and llguidance (parser/abstract_parser,
#   structured-output backends), cachetools (utils/cache) and prometheus-client (metrics).
# Found in a fresh clone's venv (runtime + dev requirements only): a venv with more packages
# (bench.txt) hides missing ones.
# triton is NOT needed: no module on the probe's path imports it (vllm/triton_utils/importing.py
# checks find_spec("triton") and puts placeholders in its place); it would add 1 GB.
# Everything else vLLM imports (pydantic, torch 2.13 CPU, tokenizers, prometheus client,
# starlette, ...) comes from the project's venv through a .pth file, so its CPU torch is reused
# and nothing CUDA is installed; transformers and fastapi, which vLLM 0.33.0 caps below the
# project's versions, get vLLM's own range here (pure Python, they shadow the project's).
# Wheels are kept in a wheel cache outside the work tree (PyPI's responses carry no cache headers,
# so pip's own HTTP cache never keeps them): a rebuild or a fresh clone on the same machine
# installs offline; a new machine downloads 348 MB once (~20 s at ~20 MB/s). The env takes 916 MB.
# Idempotent: DIR/.ok holds a hash of this script and of the project Python it borrows from; a
# matching stamp means nothing to do (`TOKENLEAN_MAIN_PYTHON` overrides .venv/bin/python).
set -euo pipefail

DIR=${1:?usage: scripts/vllm-conformance-env.sh DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
MAIN_PY=${TOKENLEAN_MAIN_PYTHON:-$ROOT/.venv/bin/python}
[[ -x $MAIN_PY ]] || { echo "vllm-conformance-env: no project Python at $MAIN_PY" >&2; exit 1; }
MAIN_PY=$(cd "$(dirname "$MAIN_PY")" && pwd)/$(basename "$MAIN_PY") # one stamp however it is named
WHEELS=${TOKENLEAN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenlean/wheels}
STAMP=$DIR/.ok

PKGS=(
  vllm==0.33.0
  cbor2==6.3.0
  msgspec==0.22.0
  pybase64==1.5.1
  uvloop==0.23.0
  openai-harmony==0.0.8
  partial-json-parser==0.2.1.1.post7
  cachetools==8.0.1     # vllm.utils.cache (multimodal cache, reached from sampling_params)
  prometheus-client==0.26.0  # vllm's metrics modules (>=0.18.0)
  xgrammar==0.2.8       # vllm 0.33.0: xgrammar==0.2.8
  apache-tvm-ffi==0.1.15.post2
  llguidance==1.7.6     # vllm 0.33.0: >=1.7.0,<1.8.0
  transformers==5.20.2  # vllm 0.33.0: >=5.16.1,<5.21.0 (the project has 5.23)
  fastapi==0.136.3      # vllm 0.33.0: >=0.133.0,<0.137.0 (the project has 0.165)
)

# the stamp: this script (its pins) and the project Python whose site-packages the env borrows
key=$({ cat "${BASH_SOURCE[0]}"; echo "$MAIN_PY"; } | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$key" && -x $DIR/bin/python ]]; then
  touch "$STAMP" # newer than its prerequisites for make
  echo "vllm-conformance-env: $DIR is up to date"
  exit 0
fi
start=$SECONDS
rm -rf "$DIR"
"$MAIN_PY" -m venv --without-pip "$DIR"
site=$("$DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
main_site=$("$MAIN_PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')

pip=("$MAIN_PY" -m pip --disable-pip-version-check)
# pip runs as DIR's own Python (--python), which sees only DIR's empty site-packages: never the
# project's venv, whose transformers/fastapi a --prefix install would uninstall.
# --no-compile: byte-compiling all of vLLM and transformers costs ~30 s of CPU; the probe compiles
# the few hundred modules it imports on its first run
install=("${pip[@]}" --python "$DIR/bin/python" install -q --no-deps --only-binary=:all: --no-index
  --find-links "$WHEELS" --no-compile "${PKGS[@]}")
mkdir -p "$WHEELS"
if ! "${install[@]}" 2>/dev/null; then
  echo "vllm-conformance-env: fetching wheels into $WHEELS"
  # (the machine's file:// extra indexes lack most of these: drop pip's warnings about that)
  "${pip[@]}" download -q --no-deps --only-binary=:all: -d "$WHEELS" "${PKGS[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  "${install[@]}"
fi
# after the install, so pip never sees (nor touches) the project's packages
echo "$main_site" >"$site/tokenlean-project-venv.pth"

# cheap check (importing vLLM takes ~17 s of CPU, which the conformance test spends anyway): every
# pin resolves inside DIR, and torch (never installed here) comes from the project's venv
"$DIR/bin/python" - "$site" "${PKGS[@]}" <<'EOF' || { echo "vllm-conformance-env: $DIR is broken" >&2; exit 1; }
import sys
from importlib.metadata import distribution
site, pins = sys.argv[1], [p.split("==") for p in sys.argv[2:]]
for name, version in pins:
    dist = distribution(name)
    assert dist.version == version, (name, dist.version, version)
    assert str(dist.locate_file("")).startswith(site), (name, dist.locate_file(""))
torch = distribution("torch")
assert not str(torch.locate_file("")).startswith(site), torch.locate_file("")
EOF
echo "$key" >"$STAMP"
echo "vllm-conformance-env: built $DIR in $((SECONDS - start)) s ($(du -sh "$DIR" | cut -f1))"
