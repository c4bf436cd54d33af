#!/usr/bin/env bash
# Proves the Dockerfile without Docker Hub or a Docker daemon: run by hand (root), not in CI.
#   1. debootstrap a minimal Debian bookworm root with Debian's python3 (3.11) and import it
#      as the local base image localhost/serval-base:bookworm;
#   2. buildah builds ../../Dockerfile unchanged over that base (--build-arg PYTHON_IMAGE);
#   3. podman runs the image read-only as its non-root user with examples/models mounted,
#      waits for ready, runs one inference and the HEALTHCHECK, stops it with SIGTERM and
#      checks the exit status 0; prints the image's size.
# Needs: apt-get install buildah podman debootstrap runc (Debian 12), the Debian mirror and the
# package index (pip in the build stage) reachable. Env: EXTRAS (default onnx,grpc, enough
# for examples/models), KEEP=1 keeps the images, WORK (scratch folder).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
extras=${EXTRAS:-onnx,grpc}
work=${WORK:-/var/tmp/serval-container}
base=localhost/serval-base:bookworm
image=localhost/serval:proof
name=serval-proof
port=${PORT:-18080}

step() { printf '\n== %s\n' "$*"; }
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" != 1 ]; then podman rmi -f "$image" "$base" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

for tool in debootstrap buildah podman curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)"; exit 2; }
done

# Sandboxes (a Firecracker VM here) may refuse what podman does by default: crun refuses
# hybrid cgroups (v1 plus a v2 mount with controllers), so runc runs the container when it is
# installed; raising RLIMIT_NOFILE/NPROC above the current hard limit is refused, so the
# container gets the current ones. The state folder is a host folder chowned to the image's
# user (:U), as Kubernetes' emptyDir with fsGroup would be (a tmpfs here stayed root's).
runtime=()
command -v runc >/dev/null && runtime=(--runtime runc)
run=(podman "${runtime[@]}")
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=4096:4096")

step "1. Debian base with python3 (debootstrap)"
if ! podman image exists "$base"; then
    rm -rf "$work/root" && mkdir -p "$work"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/root" http://deb.debian.org/debian
    # What a slim base leaves out: apt's lists and caches, docs, man pages.
    rm -rf "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/* \
        "$work/root"/usr/share/doc/* "$work/root"/usr/share/man/*
    tar -C "$work/root" -c . | podman import --change 'CMD ["python3"]' - "$base"
fi
podman image ls "$base"

step "2. buildah bud Dockerfile (EXTRAS=$extras)"
# chroot isolation and the host's network: no daemon, no nested namespaces needed. The
# host's CA bundle and pip.conf are bound into the build's RUN steps only (not the image):
# where HTTPS goes through an intercepting proxy, pip needs its CA.
mounts=()
for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
    [ -f "$f" ] && mounts+=(--volume "$f:$f:ro")
done
buildah bud --isolation chroot --network host --format docker --layers=false "${mounts[@]}" \
    --build-arg PYTHON_IMAGE="$base" --build-arg EXTRAS="$extras" \
    -f "$repo/Dockerfile" -t "$image" "$repo"

size=$(podman image inspect "$image" --format '{{.Size}}')
base_size=$(podman image inspect "$base" --format '{{.Size}}')
echo "image $image: $((size / 1000000)) MB (base $((base_size / 1000000)) MB)"
echo "user: $(podman image inspect "$image" --format '{{.Config.User}}')"
echo "healthcheck: $(podman image inspect "$image" --format '{{.Config.Healthcheck.Test}}')"
# No compiler, pip or cache in the final image.
"${run[@]}" run --rm "${limits[@]}" --entrypoint sh "$image" -c \
    'for t in gcc cc pip pip3; do command -v $t && exit 1; done; \
     test ! -e /root/.cache && test ! -e /var/lib/serval/.cache && echo "no compiler, pip or cache"'

step "3. podman run (read-only root, non-root) and probes"
mkdir -p "$work/state"
podman rm -f "$name" >/dev/null 2>&1 || true
"${run[@]}" run -d --name "$name" --read-only --tmpfs /tmp "${limits[@]}" \
    --cap-drop ALL --security-opt no-new-privileges -v "$work/state:/var/lib/serval:U" \
    -p "127.0.0.1:$port:8080" -v "$repo/examples/models:/models:ro" "$image"
deadline=$((SECONDS + 120))
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ] || [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ]; then
        podman logs "$name" | tail -30; echo "FAILED: not ready"; exit 1
    fi
    sleep 1
done
echo "ready: $(curl -s "http://127.0.0.1:$port/v2/health/ready" -o /dev/null -w '%{http_code}')"
curl -sf "http://127.0.0.1:$port/v2/models/classifier/infer" -H 'content-type: application/json' \
    -d '{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
echo
podman exec "$name" id
podman exec "$name" sh -c 'touch /probe 2>/dev/null && exit 1; echo "root file system: read-only"'
"${run[@]}" healthcheck run "$name" && echo "healthcheck: healthy"

step "4. SIGTERM: graceful stop"
"${run[@]}" stop -t 60 "$name" >/dev/null
status=$(podman inspect -f '{{.State.ExitCode}}' "$name")
podman logs "$name" 2>&1 | tail -5
echo "exit status after SIGTERM: $status"
[ "$status" -eq 0 ] || { echo "FAILED: exit status $status"; exit 1; }
echo "OK: image $image $((size / 1000000)) MB built without a registry and served"
