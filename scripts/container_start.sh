#!/usr/bin/env bash
# What the container runs (the serve and demo images' CMD; the Kubernetes Deployment runs `serve`).
#
#   container_start.sh [all]   seed, then serve
#   container_start.sh seed    only with M2GRL_SEED_SAMPLE=1 (the demo image sets it): when
#                              M2GRL_INDEX_ROOT has no CURRENT, copy the bundled sample index version
#                              (M2GRL_SAMPLE_INDEX) there, or build one from the bundled sample
#                              (M2GRL_SAMPLE_DATA; needs the offline image's training stack) when the
#                              image carries none. Otherwise nothing: the sample is research-only data
#                              and never reaches a production volume unasked.
#   container_start.sh serve   exec `m2grl serve` with M2GRL_WORKERS workers (the same server as
#                              outside a container: JSON bodies on uvicorn's own 400s too)
#
# Environment: M2GRL_INDEX_ROOT (default /data/index), M2GRL_HOST (0.0.0.0), M2GRL_PORT (8000),
# M2GRL_WORKERS (2), M2GRL_HOME (/opt/m2grl), M2GRL_SEED_SAMPLE (0), PROMETHEUS_MULTIPROC_DIR (default
# /tmp/m2grl-prometheus when M2GRL_WORKERS > 1); every other M2GRL_* variable (uvicorn's
# M2GRL_TIMEOUT_KEEP_ALIVE_S, M2GRL_LIMIT_CONCURRENCY, M2GRL_BACKLOG included) reaches the service's
# settings unchanged, checked by `m2grl serve` before it starts.
set -euo pipefail

APP_HOME=${M2GRL_HOME:-/opt/m2grl}
export M2GRL_INDEX_ROOT=${M2GRL_INDEX_ROOT:-/data/index}
SAMPLE_INDEX=${M2GRL_SAMPLE_INDEX:-$APP_HOME/sample-index}
SAMPLE_DATA=${M2GRL_SAMPLE_DATA:-$APP_HOME/data}
HOST=${M2GRL_HOST:-0.0.0.0}
PORT=${M2GRL_PORT:-8000}
WORKERS=${M2GRL_WORKERS:-2}
SEED_SAMPLE=${M2GRL_SEED_SAMPLE:-0}

log() { echo "container_start: $*" >&2; }

seed() {
  local root=$M2GRL_INDEX_ROOT
  if [ -s "$root/CURRENT" ]; then
    log "serving the published index under $root ($(cat "$root/CURRENT"))"
    return 0
  fi
  if [ "$SEED_SAMPLE" != 1 ]; then
    log "no index under $root: unready until the daily chain publishes one (M2GRL_SEED_SAMPLE=1 seeds the sample)"
    return 0
  fi
  mkdir -p "$root/versions"
  # several replicas may start at once on one shared volume: one seeds, the others wait and reuse it
  exec 9>"$root/.seed.lock"
  flock 9
  if [ -s "$root/CURRENT" ]; then
    log "another replica seeded $root"
  elif [ -s "$SAMPLE_INDEX/CURRENT" ]; then
    local version
    version=$(tr -d '[:space:]' <"$SAMPLE_INDEX/CURRENT")
    log "no index under $root: seeding it with the bundled version $version"
    rm -rf "$root/versions/.seed-$version"
    cp -R "$SAMPLE_INDEX/versions/$version" "$root/versions/.seed-$version"
    # rename into place, then move CURRENT last: the service never sees a half-copied version
    [ -e "$root/versions/$version" ] || mv "$root/versions/.seed-$version" "$root/versions/$version"
    rm -rf "$root/versions/.seed-$version"
    printf '%s\n' "$version" >"$root/.CURRENT.seed"
    mv -f "$root/.CURRENT.seed" "$root/CURRENT"
  else
    log "no index under $root and none bundled: building one from the sample in $SAMPLE_DATA"
    bash "$APP_HOME/scripts/container_build.sh" sample-index "$root" "$SAMPLE_DATA"
  fi
  flock -u 9
  exec 9>&-
}

serve() {
  if [ "$WORKERS" -gt 1 ]; then
    export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-/tmp/m2grl-prometheus}
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    # files left by a previous run would be summed into this run's counters
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
  fi
  log "serving $M2GRL_INDEX_ROOT on $HOST:$PORT with $WORKERS worker(s)"
  # uvicorn's limits come from the service settings (M2GRL_TIMEOUT_KEEP_ALIVE_S...), read by m2grl serve
  exec m2grl serve --index-root "$M2GRL_INDEX_ROOT" --host "$HOST" --port "$PORT" --workers "$WORKERS"
}

case "${1:-all}" in
  all) seed && serve ;;
  seed) seed ;;
  serve) serve ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
