#!/usr/bin/env bash
# Start Debian's redis-server on a loopback port, for tests and benchmarks (the one launcher of both).
#
#   scripts/start_redis.sh [DIR [PORT]]   -> prints "PORT PID" on stdout once Redis answers PING
#
# Installs redis-server with apt-get when it is missing. The server runs in the background with no
# persistence, bound to 127.0.0.1, its files in DIR (default: a new temporary folder), on PORT (default:
# a free port, another one tried if it is taken meanwhile); stop it with `kill PID` (or
# `redis-cli -p PORT shutdown nosave`).
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server missing: installing it with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
fi

DIR="${1:-$(mktemp -d -t m2grl-redis-XXXXXX)}"
FIXED_PORT="${2:-}"
mkdir -p "$DIR"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

for _ in 1 2 3 4 5; do
  PORT="${FIXED_PORT:-$(free_port)}"
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
    --daemonize no --protected-mode yes --loglevel warning --logfile "$DIR/redis.log" \
    </dev/null >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then
      echo "$PORT $PID"
      exit 0
    fi
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  kill "$PID" 2>/dev/null || true  # port taken meanwhile, or too slow: try another port
  if [ -n "$FIXED_PORT" ]; then break; fi
done
echo "could not start redis-server (see $DIR/redis.log)" >&2
exit 1
