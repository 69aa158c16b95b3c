#!/usr/bin/env bash
# Second local S3 server for tests of what SeaweedFS lacks (storage classes, SSE-KMS
# headers, tags, restore): moto's server, pinned, in the project's own venv, on a free
# port of 127.0.0.1.
#
#   scripts/moto-server.sh install          # install moto[server] into .venv
#   scripts/moto-server.sh start DIR        # start in DIR; prints an `export ...` line
#   scripts/moto-server.sh stop DIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BUCKETFS_VENV:-$ROOT/.venv}"
# shellcheck source=scripts/server-lib.sh
. "$ROOT/scripts/server-lib.sh"
MOTO_VERSION="5.2.6"

: "${AWS_ACCESS_KEY_ID:=bucketfs-test}"
: "${AWS_SECRET_ACCESS_KEY:=bucketfs-test-secret}"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

install() {
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    if "$VENV/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
        return 0
    fi
    echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
    "$VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
}

start() {
    local dir="$1"
    install
    mkdir -p "$dir"
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/moto.pid"
    local endpoint="http://127.0.0.1:$port"
    wait_ready "moto" "$dir/moto.pid" "$dir/moto.log" "$endpoint" 150 || return 1
    echo "export BUCKETFS_TEST_MOTO_ENDPOINT=$endpoint"
}

stop() {
    stop_pidfile "$1/moto.pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?start DIR}" ;;
    stop) stop "${2:?stop DIR}" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
