# Shared by scripts/s3-server.sh and scripts/moto-server.sh (sourced, not run): waiting
# for a local S3 server to answer, and stopping it. Expects $VENV (with boto3).

# wait_ready NAME PIDFILE LOG ENDPOINT TRIES: 0 once the server at ENDPOINT answers a
# signed ListBuckets, polled every 0.2 s at most TRIES times; 1 (with the log's tail)
# if it exits or never answers.
wait_ready() {
    local name="$1" pidfile="$2" log="$3" endpoint="$4" tries="$5"
    for _ in $(seq 1 "$tries"); do
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "$name exited; see $log" >&2; tail -20 "$log" >&2; return 1
        fi
        if "$VENV/bin/python" - "$endpoint" <<'PY' 2>/dev/null
import sys, boto3
from botocore.config import Config
c = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                 config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                               proxies={}))
c.list_buckets()
PY
        then
            return 0
        fi
        sleep 0.2
    done
    echo "$name did not become ready; see $log" >&2
    return 1
}

# stop_pidfile PIDFILE: stop the process it names (TERM, then KILL after 5 s) and
# remove the file.
stop_pidfile() {
    local pidfile="$1"
    [ -f "$pidfile" ] || return 0
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}
