#!/usr/bin/env bash
# The install steps of the Dockerfile, as a script so tests run exactly what `docker build` runs.
#
#   container_build.sh torch VENV
#       Create the virtualenv VENV (when absent) and install torch (TORCH_SPEC, default
#       torch==2.13.0), also looking in TORCH_INDEX_URL when set: the Dockerfile sets PyTorch's CPU
#       wheel index there, because PyPI's Linux torch pulls a multi-GB CUDA build.
#       A step of its own so the Docker layer holding torch survives source changes.
#   container_build.sh project VENV SRC [EXTRAS]
#       Install the project (not editable) from the source folder SRC into VENV, with the
#       comma-separated pyproject extras EXTRAS (e.g. `gpu`), and check that it imports.
#   container_build.sh install VENV SRC [EXTRAS]
#       Both of the above.
#   container_build.sh sample-index INDEX_ROOT DATA_DIR
#       Run the daily chain (prepare, train, train-metric, build-index + publish) on the bundled
#       sample under DATA_DIR, publishing one index version under INDEX_ROOT. Needs `m2grl` on PATH.
#       SAMPLE_SOURCE (movielens|taobao, default movielens) and SAMPLE_EPOCHS (default 2) tune it.
set -euo pipefail

usage() {
  sed -n '2,16p' "$0" >&2
  exit 2
}

install_torch() {
  local venv=$1
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # +cpu local versions sort above the plain PyPI release, so the extra index wins when it is given
  "$venv/bin/pip" install --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
}

install_project() {
  local venv=$1 src=$2 extras=${3:-}
  [ -x "$venv/bin/python" ] || { echo "container_build: no virtualenv at $venv (run the torch step first)" >&2; exit 1; }
  [ -f "$src/pyproject.toml" ] || { echo "container_build: $src/pyproject.toml not found" >&2; exit 1; }
  local target=$src
  if [ -n "$extras" ]; then
    target="${src}[${extras}]"
  fi
  # not editable: the runtime stage copies only the venv, never the source tree
  "$venv/bin/pip" install --disable-pip-version-check "$target"
  "$venv/bin/python" -c "import app.settings, index.errors, core.layout" \
    || { echo "container_build: the installed package does not import" >&2; exit 1; }
}

sample_index() {
  local index_root=$1 data_dir=$2
  local source=${SAMPLE_SOURCE:-movielens} epochs=${SAMPLE_EPOCHS:-2} input
  case "$source" in
    movielens) input="$data_dir/movielens-small" ;;
    taobao) input="$data_dir/taobao-sample/UserBehavior_head_sample.csv.gz" ;;
    *) echo "container_build: SAMPLE_SOURCE=$source; valid: movielens, taobao" >&2; exit 2 ;;
  esac
  [ -e "$input" ] || { echo "container_build: bundled sample $input not found" >&2; exit 1; }
  # global, not local: the EXIT trap runs after this function returned
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/m2grl-sample.XXXXXX")
  local work=$WORK
  # the intermediate dataset/model folders are not needed once the index is published
  trap 'rm -rf "$WORK"' EXIT
  m2grl prepare --source "$source" --input "$input" --output "$work/dataset"
  m2grl train --dataset "$work/dataset" --output "$work/model" --epochs "$epochs"
  m2grl train-metric --dataset "$work/dataset" --model "$work/model" --output "$work/metric"
  m2grl build-index --model "$work/model" --metric "$work/metric" --index-root "$index_root"
  [ -s "$index_root/CURRENT" ] || { echo "container_build: no CURRENT under $index_root" >&2; exit 1; }
}

case "${1:-}" in
  torch) [ $# -eq 2 ] || usage; install_torch "$2" ;;
  project) [ $# -ge 3 ] || usage; install_project "$2" "$3" "${4:-}" ;;
  install) [ $# -ge 3 ] || usage; install_torch "$2"; install_project "$2" "$3" "${4:-}" ;;
  sample-index) [ $# -eq 3 ] || usage; sample_index "$2" "$3" ;;
  *) usage ;;
esac
