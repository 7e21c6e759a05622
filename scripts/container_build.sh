#!/usr/bin/env bash
# The install steps of the Dockerfile, as a script so tests run exactly what `docker build` runs.
#
#   container_build.sh requirements SRC OUT [EXTRAS]
#       Write the requirement file OUT: SRC/pyproject.toml's dependencies plus those of the
#       comma-separated extras EXTRAS (e.g. `offline,gpu`). Reads only pyproject.toml, so the
#       Dockerfile runs it in a stage of its own and the layers installing OUT are rebuilt only
#       when a dependency changes, not when a source file or the project's version does.
#   container_build.sh torch VENV
#       Create the virtualenv VENV (when absent) and install torch (TORCH_SPEC, default
#       torch==2.13.0), also looking in TORCH_INDEX_URL when set: the Dockerfile sets PyTorch's CPU
#       wheel index there, because PyPI's Linux torch pulls a multi-GB CUDA build.
#   container_build.sh deps VENV REQUIREMENTS
#       Create VENV (when absent) and install the requirement file (TORCH_INDEX_URL as above).
#   container_build.sh project VENV SRC
#       Install the project (not editable, --no-deps: the deps step installed them) from the source
#       folder SRC into VENV and check that the service and the CLI import (and the training
#       code, when SRC holds offline/).
#   container_build.sh install VENV SRC [EXTRAS]
#       requirements, torch (when EXTRAS names `offline`), deps and project in one go.
#   container_build.sh sample-index INDEX_ROOT DATA_DIR
#       Run the daily chain (prepare, train, train-metric, build-index + publish) on the bundled
#       sample under DATA_DIR, publishing one index version under INDEX_ROOT. Needs `m2grl` on PATH
#       with the training stack. SAMPLE_SOURCE (movielens|taobao, default movielens) and
#       SAMPLE_EPOCHS (default 2) tune it.
set -euo pipefail

usage() {
  sed -n '2,27p' "$0" >&2
  exit 2
}

write_requirements() {
  local src=$1 out=$2 extras=${3:-}
  [ -f "$src/pyproject.toml" ] || { echo "container_build: $src/pyproject.toml not found" >&2; exit 1; }
  mkdir -p "$(dirname "$out")"
  python3 - "$src/pyproject.toml" "$out" "$extras" <<'PY'
import sys
import tomllib

pyproject, out, extras = sys.argv[1:]
with open(pyproject, "rb") as fh:
    project = tomllib.load(fh)["project"]
known = project.get("optional-dependencies", {})
wanted = [name.strip() for name in extras.split(",") if name.strip()]
unknown = [name for name in wanted if name not in known]
if unknown:
    sys.exit(f"container_build: unknown extra(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
lines = list(project["dependencies"])
for name in wanted:
    lines += [req for req in known[name] if req not in lines]
with open(out, "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines) + "\n")
PY
}

make_venv() {
  local venv=$1
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
}

install_torch() {
  local venv=$1
  make_venv "$venv"
  # +cpu local versions sort above the plain PyPI release, so the extra index wins when it is given
  "$venv/bin/pip" install --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
}

install_deps() {
  local venv=$1 requirements=$2
  [ -f "$requirements" ] || { echo "container_build: requirement file $requirements not found" >&2; exit 1; }
  make_venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r "$requirements"
}

install_project() {
  local venv=$1 src=$2
  [ -x "$venv/bin/python" ] || { echo "container_build: no virtualenv at $venv (run the deps step first)" >&2; exit 1; }
  [ -f "$src/pyproject.toml" ] || { echo "container_build: $src/pyproject.toml not found" >&2; exit 1; }
  # not editable: the runtime stages copy only the venv, never the source tree
  "$venv/bin/pip" install --disable-pip-version-check --no-deps "$src"
  local modules="app.main, cli.main, cli.serving, index.serving"
  if [ -d "$src/offline" ]; then
    modules="$modules, offline.jobs.train, offline.data.prepare"
  fi
  # run outside SRC, so the installed package is imported, not the source folder
  (cd / && "$venv/bin/python" -c "import $modules") \
    || { echo "container_build: the installed package does not import ($modules)" >&2; exit 1; }
}

install_all() {
  local venv=$1 src=$2 extras=${3:-}
  local requirements
  requirements=$(mktemp "${TMPDIR:-/tmp}/m2grl-requirements.XXXXXX")
  write_requirements "$src" "$requirements" "$extras"
  case ",$extras," in
    *,offline,*) install_torch "$venv" ;;
  esac
  install_deps "$venv" "$requirements"
  rm -f "$requirements"
  install_project "$venv" "$src"
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
  requirements) [ $# -ge 3 ] && [ $# -le 4 ] || usage; write_requirements "$2" "$3" "${4:-}" ;;
  torch) [ $# -eq 2 ] || usage; install_torch "$2" ;;
  deps) [ $# -eq 3 ] || usage; install_deps "$2" "$3" ;;
  project) [ $# -eq 3 ] || usage; install_project "$2" "$3" ;;
  install) [ $# -ge 3 ] && [ $# -le 4 ] || usage; install_all "$2" "$3" "${4:-}" ;;
  sample-index) [ $# -eq 3 ] || usage; sample_index "$2" "$3" ;;
  *) usage ;;
esac
