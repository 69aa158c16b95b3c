#!/usr/bin/env bash
# Benchmark bucketfs against its peers (s3fs, rclone mount) and the raw S3 client, on the
# project's local S3 server over loopback. Every figure is a median of --runs runs; the
# report gives, per workload, bucketfs / best peer and bucketfs / raw client, measured in
# the same run against the same server.
#
#   scripts/bench.sh [--with-peers] [--latency-ms N] [--runs N] [--quick]
#                    [--tools bucketfs,s3fs,rclone] [--workloads read,write,...]
#                    [--out bench/results]
#
#   --with-peers     apt-get install s3fs and rclone (and fio) when missing
#   --latency-ms N   put the project's latency proxy between every client and the server:
#                    each request waits N ms before it reaches the server
#   --quick          small sizes (256 MiB objects, 2,000-object listings): a smoke run
#   --keep           leave the server and its data in place after the run
#
# Tools: bucketfs (defaults), bucketfs-listing (--metadata-source listing) and
# bucketfs-noxattr (listing mode and --no-xattr) for the metadata workloads, s3fs and
# rclone (--vfs-cache-mode off) with their defaults, and the raw SDK client.
# Workloads: read (sequential, cold: caches dropped, fresh mount), write (until close
# returns, then until the S3 API sees the object), randread (fio, 4 KiB, iodepth 1,
# 4 jobs), ls (ls -l of one directory, first and second run in one mount), find (a nested
# tree), create (4 KiB files until visible), tar (tar -xf of a 300-file tree).
# Results: bench/results/<stamp>.json (every run) and .md (the table); latest.md too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS=3
LATENCY=0
WITH_PEERS=0
QUICK=0
KEEP=0
TOOLS="bucketfs,s3fs,rclone"
WORKLOADS="read,write,randread,ls,find,create,tar"
OUT="$ROOT/bench/results"
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --latency-ms) LATENCY="$2"; shift 2 ;;
        --with-peers) WITH_PEERS=1; shift ;;
        --quick) QUICK=1; shift ;;
        --keep) KEEP=1; shift ;;
        --tools) TOOLS="$2"; shift 2 ;;
        --workloads) WORKLOADS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    READ_SIZE=256MiB; READ_BYTES=$((256 << 20)); RAND_SIZE=256MiB
    WRITE_MIB=256; LS_COUNT=2000; FIND_COUNT=4000; CREATE_COUNT=200; RAND_SECS=5
else
    READ_SIZE=2GiB; READ_BYTES=$((2 << 30)); RAND_SIZE=1GiB
    WRITE_MIB=1024; LS_COUNT=10000; FIND_COUNT=20000; CREATE_COUNT=1000; RAND_SECS=20
fi

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
has() { [[ ",$1," == *",$2,"* ]]; }

# ---- tools --------------------------------------------------------------------------
need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v getfattr >/dev/null || need_pkgs+=(attr)
command -v fio >/dev/null || need_pkgs+=(fio)
if [ "$WITH_PEERS" = 1 ]; then
    command -v s3fs >/dev/null || need_pkgs+=(s3fs)
    command -v rclone >/dev/null || need_pkgs+=(rclone)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi
active_tools=()
for t in ${TOOLS//,/ }; do
    case "$t" in
        bucketfs) active_tools+=(bucketfs) ;;
        s3fs|rclone)
            if command -v "$t" >/dev/null; then active_tools+=("$t")
            else log "$t not installed: skipped (use --with-peers)"; fi ;;
        *) echo "unknown tool $t" >&2; exit 2 ;;
    esac
done

log "building release binaries"
cargo build --release --bins >&2
BIN="$ROOT/target/release/bucketfs"
HELPER="$ROOT/target/release/bucketfs-bench"

# ---- server, proxy, data ------------------------------------------------------------
WORK="$(mktemp -d /tmp/bucketfs-bench.XXXXXX)"
MNT="$WORK/mnt"; mkdir -p "$MNT"
SERVER_DIR="$WORK/server"
PIDS=()
cleanup() {
    set +e
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"; }
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then
        log "kept $WORK (server still running)"
    else
        bash "$ROOT/scripts/s3-server.sh" stop "$SERVER_DIR" >/dev/null 2>&1
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

bash "$ROOT/scripts/s3-server.sh" start "$SERVER_DIR" >"$WORK/env.sh"
# shellcheck disable=SC1091
source "$WORK/env.sh"
DIRECT="$BUCKETFS_TEST_ENDPOINT"
EP="$DIRECT"
if [ "$LATENCY" != 0 ]; then
    upstream="${DIRECT#http://}"
    "$HELPER" proxy --upstream "$upstream" --latency-ms "$LATENCY" >"$WORK/proxy.json" &
    PIDS+=($!)
    for _ in $(seq 1 100); do [ -s "$WORK/proxy.json" ] && break; sleep 0.05; done
    port="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$WORK/proxy.json")"
    EP="http://127.0.0.1:$port"
    log "latency proxy on $EP adds ${LATENCY} ms per request"
fi
BUCKET=bench
raw() { "$HELPER" "$@" --bucket "$BUCKET" --endpoint-url "$EP"; }
direct() { "$HELPER" "$@" --bucket "$BUCKET" --endpoint-url "$DIRECT"; }

log "filling bucket $BUCKET"
direct make-bucket >/dev/null
direct put-big --key big/seq --size "$READ_SIZE" >/dev/null
direct put-big --key big/rand --size "$RAND_SIZE" >/dev/null
direct put-many --prefix ls/ --count "$LS_COUNT" --size 1KiB >/dev/null
direct put-many --prefix tree/ --count "$FIND_COUNT" --size 1KiB --depth 3 --fanout 10 >/dev/null
head -c $((WRITE_MIB << 20)) /dev/urandom >"$WORK/write.src"
head -c 4096 /dev/urandom >"$WORK/small.src"
python3 - "$WORK/tarsrc" <<'PY'
import os, random, sys
root = sys.argv[1]; random.seed(4)
for i in range(300):
    d = os.path.join(root, f"d{i % 12}", f"s{i % 5}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:03}.dat"), "wb") as f:
        f.write(os.urandom(random.choice([100, 4096, 20000, 70000])))
PY
tar -cf "$WORK/tree.tar" -C "$WORK/tarsrc" .
RESULTS="$WORK/results.jsonl"; : >"$RESULTS"

# ---- mounting -----------------------------------------------------------------------
TOOL_PID=""
mount_tool() { # TOOL [extra bucketfs args...]
    local tool="$1"; shift
    case "$tool" in
        bucketfs)
            "$BIN" mount "$BUCKET" "$MNT" --endpoint-url "$EP" --foreground "$@" \
                2>>"$WORK/bucketfs.log" &
            ;;
        bucketfs-listing)
            "$BIN" mount "$BUCKET" "$MNT" --endpoint-url "$EP" --foreground \
                --metadata-source listing 2>>"$WORK/bucketfs.log" &
            ;;
        bucketfs-noxattr) # listing mode without xattrs: no request counts (no stats xattr)
            "$BIN" mount "$BUCKET" "$MNT" --endpoint-url "$EP" --foreground \
                --metadata-source listing --no-xattr 2>>"$WORK/bucketfs.log" &
            ;;
        s3fs)
            printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/s3fs.passwd"
            chmod 600 "$WORK/s3fs.passwd"
            s3fs "$BUCKET" "$MNT" -f -o url="$EP" -o use_path_request_style \
                -o passwd_file="$WORK/s3fs.passwd" -o endpoint="$AWS_REGION" \
                2>>"$WORK/s3fs.log" &
            ;;
        rclone)
            env -u AWS_CA_BUNDLE RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
            RCLONE_CONFIG_BENCH_ENDPOINT="$EP" RCLONE_CONFIG_BENCH_REGION="$AWS_REGION" \
            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
                rclone mount "bench:$BUCKET" "$MNT" --vfs-cache-mode off \
                2>>"$WORK/rclone.log" &
            ;;
    esac
    TOOL_PID=$!
    for _ in $(seq 1 300); do
        mountpoint -q "$MNT" && return 0
        kill -0 "$TOOL_PID" 2>/dev/null || { log "$tool exited while mounting"; return 1; }
        sleep 0.1
    done
    log "$tool did not mount in 30 s"; return 1
}
unmount_tool() {
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 1; fusermount3 -uz "$MNT" 2>/dev/null; }
    wait "$TOOL_PID" 2>/dev/null || true
    TOOL_PID=""
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
peak_rss_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
stats_json() { # bucketfs request counts, {} for the peers
    if [[ "$1" == bucketfs* ]]; then
        getfattr --only-values -n user.bucketfs.stats "$MNT" 2>/dev/null || echo '{}'
    else
        echo '{}'
    fi
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
CLK_TCK="$(getconf CLK_TCK)"

# record WORKLOAD TOOL RUN VALUE UNIT SECONDS STATS_BEFORE [EXTRA_JSON]
record() {
    local rss=0 cpu=0 cpu0=0 after='{}'
    if [ -n "$TOOL_PID" ]; then
        rss="$(peak_rss_kib "$TOOL_PID")"
        cpu="$(cpu_ticks "$TOOL_PID")"
        cpu0="$CPU0"
        after="$(stats_json "$2")"
    fi
    python3 - "$@" "$rss" "$cpu" "$cpu0" "$CLK_TCK" "$after" >>"$RESULTS" <<'PY'
import json, sys
(workload, tool, run, value, unit, seconds, before, extra,
 rss, cpu, cpu0, tck, after) = sys.argv[1:14]
before, after = json.loads(before or "{}"), json.loads(after or "{}")
requests = {}
for op, s in after.items():
    if not isinstance(s, dict):
        continue
    n = s.get("requests", 0) - before.get(op, {}).get("requests", 0)
    b = s.get("bytes", 0) - before.get(op, {}).get("bytes", 0)
    if n:
        requests[op] = {"requests": n, "bytes": b}
row = {"workload": workload, "tool": tool, "run": int(run), "value": float(value),
       "unit": unit, "seconds": float(seconds), "peak_rss_mib": int(rss) / 1024,
       "cpu_s": (int(cpu) - int(cpu0)) / int(tck), "requests": requests}
row.update(json.loads(extra or "{}"))
print(json.dumps(row))
PY
    log "$1 $2 run $3: $4 $5"
}
CPU0=0
begin() { # after mounting: note the daemon's CPU so far and its request counts
    CPU0="$(cpu_ticks "$TOOL_PID")"
    STATS0="$(stats_json "$1")"
}

# ---- workloads ----------------------------------------------------------------------
w_read() { # TOOL RUN
    drop_caches; mount_tool "$1" || return 1; begin "$1"
    local t0 t1 n
    t0="$(now)"
    n="$(dd if="$MNT/big/seq" of=/dev/null bs=1M 2>&1 | awk '/bytes/ {print $1; exit}')"
    t1="$(now)"
    [ "$n" = "$READ_BYTES" ] || { log "read $1: $n bytes of $READ_BYTES"; unmount_tool; return 1; }
    local s; s="$(calc "$t1 - $t0")"
    record read "$1" "$2" "$(calc "$READ_BYTES / $s / 1000000")" MB/s "$s" "$STATS0" '{}'
    unmount_tool
}
w_write() {
    mount_tool "$1" || return 1; begin "$1"
    local key="w/$1-$2/file" t0 t1 t2
    mkdir -p "$MNT/w/$1-$2"
    t0="$(now)"
    dd if="$WORK/write.src" of="$MNT/$key" bs=1M status=none
    t1="$(now)"
    raw wait-visible --key "$key" --size $((WRITE_MIB << 20)) >/dev/null
    t2="$(now)"
    local sc sv; sc="$(calc "$t1 - $t0")"; sv="$(calc "$t2 - $t0")"
    record write "$1" "$2" "$(calc "$WRITE_MIB * 1048576 / $sv / 1000000")" MB/s "$sv" \
        "$STATS0" "{\"close_s\": $sc}"
    unmount_tool
    direct delete-prefix --prefix "w/$1-$2/" >/dev/null
}
w_randread() {
    drop_caches; mount_tool "$1" || return 1; begin "$1"
    local out iops
    out="$(fio --name=rand --filename="$MNT/big/rand" --readonly --rw=randread --bs=4k \
        --iodepth=1 --numjobs=4 --time_based --runtime="$RAND_SECS" --ioengine=psync \
        --group_reporting --output-format=json 2>>"$WORK/fio.log")"
    iops="$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["jobs"][0]["read"]["iops"])' <<<"$out")"
    local bytes_read; bytes_read="$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["jobs"][0]["read"]["io_bytes"])' <<<"$out")"
    record randread "$1" "$2" "$iops" IOPS "$RAND_SECS" "$STATS0" "{\"bytes_read\": $bytes_read}"
    unmount_tool
}
w_ls() {
    mount_tool "$1" || return 1; begin "$1"
    local t0 t1 t2 n
    t0="$(now)"; n="$(ls -l "$MNT/ls" | wc -l)"; t1="$(now)"
    [ "$n" -ge "$LS_COUNT" ] || { log "ls $1: $n lines"; unmount_tool; return 1; }
    record ls-cold "$1" "$2" "$(calc "$t1 - $t0")" s "$(calc "$t1 - $t0")" "$STATS0" '{}'
    begin "$1"
    t1="$(now)"; ls -l "$MNT/ls" >/dev/null; t2="$(now)"
    record ls-warm "$1" "$2" "$(calc "$t2 - $t1")" s "$(calc "$t2 - $t1")" "$STATS0" '{}'
    unmount_tool
}
w_find() {
    mount_tool "$1" || return 1; begin "$1"
    local t0 t1 n
    t0="$(now)"; n="$(find "$MNT/tree" -type f | wc -l)"; t1="$(now)"
    [ "$n" = "$FIND_COUNT" ] || { log "find $1: $n files of $FIND_COUNT"; unmount_tool; return 1; }
    record find "$1" "$2" "$(calc "$t1 - $t0")" s "$(calc "$t1 - $t0")" "$STATS0" '{}'
    unmount_tool
}
w_create() {
    mount_tool "$1" || return 1; begin "$1"
    local dir="c/$1-$2" t0 t1 t2
    mkdir -p "$MNT/$dir"
    t0="$(now)"
    python3 - "$MNT/$dir" "$CREATE_COUNT" "$WORK/small.src" <<'PY'
import sys
d, n, src = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
for i in range(n):
    with open(f"{d}/f{i:06}", "wb") as f:
        f.write(src)
PY
    t1="$(now)"
    raw wait-count --prefix "$dir/f" --count "$CREATE_COUNT" >/dev/null
    t2="$(now)"
    local sv; sv="$(calc "$t2 - $t0")"
    record create "$1" "$2" "$(calc "$CREATE_COUNT / $sv")" files/s "$sv" "$STATS0" \
        "{\"close_s\": $(calc "$t1 - $t0"), \"files\": $CREATE_COUNT}"
    unmount_tool
    direct delete-prefix --prefix "$dir/" >/dev/null
}
w_tar() {
    mount_tool "$1" || return 1; begin "$1"
    local dir="t/$1-$2" t0 t1
    mkdir -p "$MNT/$dir"
    t0="$(now)"
    tar -xf "$WORK/tree.tar" -C "$MNT/$dir"
    t1="$(now)"
    record tar "$1" "$2" "$(calc "$t1 - $t0")" s "$(calc "$t1 - $t0")" "$STATS0" '{}'
    unmount_tool
    direct delete-prefix --prefix "$dir/" >/dev/null
}

# Raw client: the same workloads straight through the SDK (the ceiling).
r_read() {
    drop_caches
    local o; o="$(raw read --key big/seq --part 8MiB --concurrency 8)"
    record read raw "$1" "$(jq_ mb_s "$o")" MB/s "$(jq_ seconds "$o")" '{}' '{}'
}
r_write() {
    local o; o="$(raw write --key "w/raw-$1/file" --size "${WRITE_MIB}MiB" --part 8MiB --concurrency 8)"
    record write raw "$1" "$(jq_ mb_s "$o")" MB/s "$(jq_ seconds "$o")" '{}' '{}'
    direct delete-prefix --prefix "w/raw-$1/" >/dev/null
}
r_randread() {
    local o; o="$(raw rand-read --key big/rand --bs 4KiB --jobs 4 --seconds "$RAND_SECS")"
    record randread raw "$1" "$(jq_ iops "$o")" IOPS "$(jq_ seconds "$o")" '{}' '{}'
}
r_ls() {
    local o; o="$(raw list --prefix ls/)"
    record ls-cold raw "$1" "$(jq_ seconds "$o")" s "$(jq_ seconds "$o")" '{}' '{}'
    # The ceiling for POSIX metadata: the listing, then a HeadObject per object, 256 at a
    # time (what statahead does).
    o="$(raw head-all --prefix ls/ --concurrency 256)"
    record ls-cold raw-head "$1" "$(jq_ seconds "$o")" s "$(jq_ seconds "$o")" '{}' '{}'
}
r_create() {
    local o; o="$(raw create --prefix "c/raw-$1/f" --count "$CREATE_COUNT" --size 4KiB)"
    record create raw "$1" "$(jq_ files_s "$o")" files/s "$(jq_ seconds "$o")" '{}' '{}'
    direct delete-prefix --prefix "c/raw-$1/" >/dev/null
}
jq_() { python3 -c 'import json,sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"; }

for w in ${WORKLOADS//,/ }; do
    for run in $(seq 1 "$RUNS"); do
        case "$w" in
            read|write|randread|ls|create) TOOL_PID=""; "r_$w" "$run" ;;
        esac
        tools=("${active_tools[@]}")
        case "$w" in
            ls) has "$TOOLS" bucketfs && tools+=(bucketfs-listing bucketfs-noxattr) ;;
            find) has "$TOOLS" bucketfs && tools+=(bucketfs-listing) ;;
        esac
        for tool in "${tools[@]}"; do
            "w_$w" "$tool" "$run" || log "$w $tool run $run failed"
            mountpoint -q "$MNT" && unmount_tool
        done
    done
done

mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$OUT/$STAMP" \
    --latency-ms "$LATENCY" --runs "$RUNS" --quick "$QUICK"
cp "$OUT/$STAMP.md" "$OUT/latest.md"
cat "$OUT/$STAMP.md"
log "results: $OUT/$STAMP.md and $OUT/$STAMP.json"
