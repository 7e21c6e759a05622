#!/usr/bin/env bash
# Pin the Dockerfile's base image by digest: resolve the current digest of the multi-platform image
# IMAGE (default: the tag the Dockerfile's `ARG PYTHON_IMAGE=` names, without any digest) on Docker
# Hub and rewrite that line to IMAGE@sha256:..., so every build uses exactly that base until the next
# run of this script (to take the base's security updates: run it, rebuild, commit).
#
#   pin_base_image.sh [DOCKERFILE]     (default: the repository's Dockerfile)
#
# Needs curl and python3 and access to Docker Hub; REGISTRY_URL and AUTH_URL override its addresses.
set -euo pipefail

DOCKERFILE=${1:-$(dirname "$0")/../Dockerfile}
REGISTRY_URL=${REGISTRY_URL:-https://registry-1.docker.io}
AUTH_URL=${AUTH_URL:-https://auth.docker.io/token}

current=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$DOCKERFILE")
[ -n "$current" ] || { echo "pin_base_image: no 'ARG PYTHON_IMAGE=' line in $DOCKERFILE" >&2; exit 1; }
image=${current%%@*}
name=${image%%:*}
tag=${image#*:}
[ "$name" != "$image" ] || { echo "pin_base_image: $image has no tag" >&2; exit 1; }
case "$name" in */*) repo=$name ;; *) repo=library/$name ;; esac

token=$(curl -fsSL "$AUTH_URL?service=registry.docker.io&scope=repository:$repo:pull" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# the index (manifest list) digest: the same pin then serves amd64 and arm64 builds
digest=$(curl -fsSI -H "Authorization: Bearer $token" \
  -H "Accept: application/vnd.oci.image.index.v1+json" \
  -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json" \
  "$REGISTRY_URL/v2/$repo/manifests/$tag" | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}')
if ! [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "pin_base_image: no digest for $image (got '${digest}')" >&2
  exit 1
fi
sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$image@$digest|" "$DOCKERFILE"
echo "pin_base_image: $image@$digest"
