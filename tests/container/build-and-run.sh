#!/usr/bin/env bash
# Build the container image without a Docker daemon or registry access, run it, and check
# what a user would: /metrics has real values, the process is not root, the health check
# passes, the default CMD runs a mounted config on a read-only root, and `podman stop`
# ends it by SIGTERM within a few seconds.
#
#   bash tests/container/build-and-run.sh            # needs root, podman, runc, debootstrap
#
# No registry can be pulled from, so the base image the Dockerfile names
# (python:3.11-slim-bookworm) is made locally with debootstrap: Debian bookworm with its
# python3, tagged under that name. Wheels are downloaded on the host (pip reaches PyPI there)
# and installed in the build with --no-index --find-links. Images live in their own store
# ($CONTAINER_STORE) so nothing touches /var/lib/containers.
set -euo pipefail
cd "$(dirname "$0")/../.."

STORE=${CONTAINER_STORE:-/var/tmp/smtp-canary-exporter-containers}
IMAGE=${IMAGE:-localhost/smtp-canary-exporter:test}
BASE=docker.io/library/python:3.11-slim-bookworm
PYTHON=${PYTHON:-python3}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NAME=smtp-canary-test-$$
UID_EXPECTED=10001

mkdir -p "$STORE"
# Without systemd, podman logs that it cannot schedule health checks as timers; the script
# runs the health check itself, so that line is noise.
podman() {
  command podman --root "$STORE/root" --runroot "$STORE/run" --runtime runc \
    --cgroup-manager cgroupfs --events-backend file "$@" \
    2> >(grep -v 'unable to get systemd connection' >&2)
}
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
step() { printf '==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  podman rm --ignore -f -t 0 "$NAME" "$NAME-cfg" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install podman runc debootstrap)"
done

# 1. The base image: a stand-in for python:3.11-slim-bookworm made with debootstrap.
if ! podman image exists "$BASE"; then
  step "base image $BASE from debootstrap (bookworm, python3)"
  t=$(now)
  rootfs="$STORE/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$STORE/debootstrap.log" 2>&1 \
    || { tail -20 "$STORE/debootstrap.log" >&2; fail "debootstrap"; }
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  echo "base image: $(since "$t") s"
fi

# 2. Wheels for an offline build: this package's build backend and every dependency.
step "wheels into ./wheelhouse"
t=$(now)
rm -rf wheelhouse
"$PYTHON" -m pip wheel -q --wheel-dir wheelhouse . 'setuptools>=68' wheel
echo "wheels: $(ls wheelhouse | wc -l) files, $(since "$t") s"

if command -v hadolint >/dev/null; then
  step "hadolint Dockerfile"
  hadolint Dockerfile
fi

# 3. The image.
step "build $IMAGE"
t=$(now)
VERSION=$("$PYTHON" -c 'import exporter; print(exporter.__version__)')
podman build --isolation=chroot --format docker --pull=never --network=host "${ULIMITS[@]}" \
  --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse \
  --build-arg VERSION="$VERSION" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" . >"$STORE/build.log" 2>&1 || { tail -30 "$STORE/build.log" >&2; fail "build"; }
BUILD_SECONDS=$(since "$t")
echo "build: $BUILD_SECONDS s, $(podman image inspect --format '{{.Size}}' "$IMAGE" \
  | awk '{ printf "%.0f MB", $1 / 1e6 }')"

inspect() { podman image inspect --format "$1" "$IMAGE"; }
[ "$(inspect '{{.Config.User}}')" = "10001:10001" ] || fail "image USER is $(inspect '{{.Config.User}}')"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["smtp-canary-exporter"]' ] || fail "ENTRYPOINT"
[ "$(inspect '{{json .Config.Cmd}}')" = '["run","--config.file=/etc/smtp-canary-exporter/config.yaml"]' ] \
  || fail "CMD is $(inspect '{{json .Config.Cmd}}')"
inspect '{{json .Config.ExposedPorts}}' | grep -q '9925/tcp' || fail "EXPOSE 9925"
[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" = "$VERSION" ] \
  || fail "OCI version label"
inspect '{{json .Config.Healthcheck}}' | grep -q -- '-/healthy' || fail "HEALTHCHECK"
if podman run --rm "${ULIMITS[@]}" --network=none --entrypoint sh "$IMAGE" -c \
    'command -v gcc cc >/dev/null'; then
  fail "a compiler is in the final image"
fi

# The container's own HTTP client: the image has python3, and no curl.
fetch() { # container url
  podman exec "$1" python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$2"
}
wait_metric() { # container pattern seconds
  local body deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    body=$(fetch "$1" http://127.0.0.1:9925/metrics 2>/dev/null || true)
    if grep -Eq "$2" <<<"$body"; then return 0; fi
    sleep 1
  done
  podman logs "$1" >&2 || true
  fail "$1: /metrics never showed $2"
}

# 4. The demo in the image: real values, a non-root process, health check, SIGTERM.
step "run $IMAGE demo"
podman run -d --name "$NAME" --network=none "${ULIMITS[@]}" "$IMAGE" \
  demo --demo.interval=2s >/dev/null
wait_metric "$NAME" '^smtp_probe_success\{relay="demo-starttls"\} 1\.0' 30
wait_metric "$NAME" '^smtp_probe_failures_total\{reason="tls_mode_mismatch",relay="demo-wrong-tls-mode"\} [1-9]' 30
wait_metric "$NAME" '^smtp_canary_received_total\{folder="inbox",mailbox="demo-mailbox",relay="demo-starttls"\} [1-9]' 60
echo "metrics: probes succeed, failures have reasons, canaries arrive"
uid=$(podman exec "$NAME" awk '/^Uid:/ { print $2 }' /proc/1/status)
[ "$uid" = "$UID_EXPECTED" ] || fail "PID 1 runs as UID $uid, expected $UID_EXPECTED"
echo "PID 1 runs as UID $uid"
podman healthcheck run "$NAME" || fail "HEALTHCHECK failed"
echo "health check: healthy"

step "podman stop (SIGTERM)"
t=$(now)
podman stop -t 20 "$NAME" >/dev/null
STOP_SECONDS=$(since "$t")
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || { podman logs "$NAME" >&2; fail "exit code $code after SIGTERM (137 is SIGKILL)"; }
podman logs "$NAME" 2>&1 | grep -q 'msg="exporter stopped"' || fail "no clean shutdown logged"
awk -v s="$STOP_SECONDS" 'BEGIN { exit !(s < 10) }' || fail "stop took $STOP_SECONDS s"
echo "stopped by SIGTERM in $STOP_SECONDS s, exit code 0"

# 5. The default CMD with a mounted config, a read-only root and the state on a volume.
step "run $IMAGE with a mounted config (default CMD, --read-only)"
cfg="$STORE/config"
rm -rf "$cfg" && mkdir -p "$cfg/state"
cat >"$cfg/config.yaml" <<'YAML'
instance: container-test
relays:
  - name: nothing-listens
    host: 127.0.0.1
    port: 1
    tls: none
    interval: 3s
    timeout: 2s
YAML
chown -R "$UID_EXPECTED:$UID_EXPECTED" "$cfg/state"
podman run -d --name "$NAME-cfg" --network=none --read-only "${ULIMITS[@]}" \
  -v "$cfg/config.yaml:/etc/smtp-canary-exporter/config.yaml:ro" \
  -v "$cfg/state:/var/lib/smtp-canary-exporter" \
  "$IMAGE" >/dev/null
wait_metric "$NAME-cfg" '^smtp_probe_failures_total\{reason="connect_refused",relay="nothing-listens"\} [1-9]' 30
fetch "$NAME-cfg" http://127.0.0.1:9925/-/ready >/dev/null || fail "/-/ready"
podman stop -t 20 "$NAME-cfg" >/dev/null
[ "$(podman inspect --format '{{.State.ExitCode}}' "$NAME-cfg")" = 0 ] || fail "config run exit code"
[ -f "$cfg/state/canaries-container-test.json" ] || fail "no canary state written to the volume"
echo "mounted config: probed, ready, state written, stopped cleanly"

echo "OK: image $IMAGE built in $BUILD_SECONDS s; SIGTERM stop in $STOP_SECONDS s"
