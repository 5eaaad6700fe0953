#!/usr/bin/env bash
# Pin every third-party image of the compose deployment to the digest its tag names today.
#
#   deploy/pin-images.sh [ENV_FILE]     (default: deploy/.env, made from .env.example if missing)
#
# For each IPMG_*_IMAGE line (IPMG_IMAGE, this project's own image, aside) it asks the registry
# with `docker buildx imagetools inspect` and rewrites the line as image:tag@sha256:..., keeping
# the tag for people to read. Run it again after changing a tag; review and commit the result.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
env_file=${1:-$here/.env}
command -v docker >/dev/null 2>&1 || {
    echo "pin-images: docker with buildx is required (docker buildx imagetools inspect)" >&2
    exit 1
}
[ -f "$env_file" ] || cp "$here/.env.example" "$env_file"

pinned=$(mktemp)
trap 'rm -f "$pinned"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        IPMG_IMAGE=*) ;;
        IPMG_*_IMAGE=*)
            name=${line%%=*}
            image=${line#*=}
            image=${image%%@*}
            digest=$(docker buildx imagetools inspect "$image" --format '{{.Manifest.Digest}}') || {
                echo "pin-images: cannot resolve $image ($name)" >&2
                exit 1
            }
            case "$digest" in
                sha256:*) ;;
                *) echo "pin-images: $image: not a digest: $digest" >&2; exit 1 ;;
            esac
            [ "${#digest}" -eq 71 ] || { echo "pin-images: $image: not a digest: $digest" >&2; exit 1; }
            line="$name=$image@$digest"
            echo "$name=$image@$digest"
            ;;
    esac
    printf '%s\n' "$line" >>"$pinned"
done <"$env_file"
cat "$pinned" >"$env_file"
