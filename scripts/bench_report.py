#!/usr/bin/env python3
"""Summarise scripts/bench.sh results: medians with min and max per workload and tool,
bucketfs request counts, and the ratios bucketfs / best peer and bucketfs / raw client.

Ratios are "times better": for throughputs (MB/s, IOPS, files/s) bucketfs / other, for
durations (s) other / bucketfs, so above 1 always means bucketfs is ahead.

    bench_report.py RESULTS.jsonl OUT_STEM [--latency-ms N] [--runs N] [--quick 0|1]
writes OUT_STEM.json and OUT_STEM.md.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
from collections import defaultdict

ORDER = ["read", "write", "randread", "ls-cold", "ls-warm", "find", "create", "tar"]
LABEL = {
    "read": "sequential read (cold)",
    "write": "sequential write until visible",
    "randread": "random 4 KiB reads, 4 jobs",
    "ls-cold": "`ls -l`, first run",
    "ls-warm": "`ls -l`, second run",
    "find": "`find -type f`, nested tree",
    "create": "create 4 KiB files until visible",
    "tar": "`tar -xf`, 300 files",
}
PEERS = ["s3fs", "rclone"]
# Figures that do not measure the same thing, left out of "best peer" (and said so).
NOT_COMPARABLE = {
    ("randread", "s3fs"): "s3fs copies the whole object to local disk, then reads the copy",
}
TOOLS = ["bucketfs", "bucketfs-listing", "bucketfs-noxattr", "raw", "raw-head"] + PEERS
HIGHER_BETTER = {"MB/s", "IOPS", "files/s"}


def better_ratio(ours, other, unit):
    if not ours or not other:
        return None
    return ours / other if unit in HIGHER_BETTER else other / ours


def fmt(v, unit):
    if v is None:
        return ""
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def targets(summary, latency_ms):
    """The issue's targets, each with the figure that decides it."""
    def get(w, t, k="median"):
        return summary.get(w, {}).get(t, {}).get(k)

    rows = []

    def check(name, value, goal, ok):
        if value is None:
            rows.append(f"| {name} | not measured | {goal} | - |")
        else:
            rows.append(f"| {name} | {value} | {goal} | {'met' if ok else 'NOT met'} |")

    v = get("read", "bucketfs", "vs_raw")
    check("sequential read / raw client", v and f"{v:.2f}x", ">= 0.9x", v and v >= 0.9)
    v = get("read", "bucketfs", "vs_best_peer")
    check("sequential read / best peer", v and f"{v:.2f}x", ">= 1.3x", v and v >= 1.3)
    v = get("write", "bucketfs", "vs_best_peer")
    check("write until visible / best peer", v and f"{v:.2f}x", ">= 1.2x", v and v >= 1.2)
    v = get("randread", "bucketfs", "vs_raw")
    check("random 4 KiB IOPS / raw client", v and f"{v:.2f}x", ">= 1.0x", v and v >= 1.0)
    v = get("randread", "bucketfs", "fetched_per_byte_read")
    check("bytes fetched per byte read", v and f"{v:.1f}", "<= 64", v is not None and v <= 64)
    for variant, label in (("bucketfs-listing", "listing mode"),
                           ("bucketfs-noxattr", "listing mode, --no-xattr")):
        lst, raw = get("ls-cold", variant), get("ls-cold", "raw")
        v = lst / raw if lst and raw else None
        check(f"`ls -l` cold, {label} / bare listing", v and f"{v:.2f}x time", "<= 1.1x",
              v and v <= 1.1)
    v = get("ls-cold", "bucketfs")
    head = get("ls-cold", "raw-head")
    ceiling = f" (raw listing + HeadObject each: {head:.2f} s)" if head else ""
    if latency_ms >= 10:
        check(f"`ls -l` cold, POSIX metadata, {latency_ms} ms latency", v and f"{v:.2f} s{ceiling}",
              "< 2 s", v and v < 2)
    elif v and head:
        rows.append(f"| `ls -l` cold, POSIX metadata / raw listing + HeadObject each | "
                    f"{v / head:.2f}x time ({v:.2f} s, {head:.2f} s) | (no goal at 0 ms) | - |")
    v = get("create", "bucketfs", "vs_best_peer")
    check("small files until visible / best peer", v and f"{v:.2f}x", ">= 1.5x", v and v >= 1.5)
    req = get("create", "bucketfs", "requests")
    n = get("create", "bucketfs", "files")
    if req and n:
        per = sum(r["requests"] for r in req.values()) / n
        check("requests per create (incl. mkdir)", f"{per:.2f}", "<= 2", per <= 2)
    v = get("read", "bucketfs", "peak_rss_mib")
    check("peak RSS during the read", v and f"{v:.0f} MiB", "<= 256 MiB", v and v <= 256)
    return ["Targets (from the issue):", "", "| target | measured | goal | |", "|---|---|---|---|"] + rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("stem")
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", type=int, default=0)
    a = ap.parse_args()

    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["workload"], r["tool"])].append(r)

    summary = {}
    for (w, t), rs in groups.items():
        vals = [r["value"] for r in rs]
        med_run = sorted(rs, key=lambda r: r["value"])[len(rs) // 2]
        summary.setdefault(w, {})[t] = {
            "unit": rs[0]["unit"],
            "median": statistics.median(vals),
            "min": min(vals),
            "max": max(vals),
            "runs": len(vals),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "requests": med_run["requests"],
            **{k: med_run[k] for k in ("close_s", "bytes_read", "files") if k in med_run},
        }

    for w, tools in summary.items():
        ours = tools.get("bucketfs")
        if not ours:
            continue
        unit = ours["unit"]
        peers = [
            (p, tools[p]["median"])
            for p in PEERS
            if p in tools and (w, p) not in NOT_COMPARABLE
        ]
        if peers:
            # best peer: highest throughput or shortest duration
            best = (max if unit in HIGHER_BETTER else min)(peers, key=lambda pv: pv[1])
            ours["best_peer"] = best[0]
            ours["vs_best_peer"] = better_ratio(ours["median"], best[1], unit)
        # POSIX `ls -l` HEADs every object: its ceiling is raw-head, not the bare listing.
        ceiling = "raw-head" if w == "ls-cold" and "raw-head" in tools else "raw"
        if ceiling in tools:
            ours["vs_raw"] = better_ratio(ours["median"], tools[ceiling]["median"], unit)
        if w == "randread" and "bytes_read" in ours:
            fetched = sum(
                v["bytes"] for op, v in ours["requests"].items() if op == "GetObject"
            )
            ours["fetched_per_byte_read"] = fetched / max(ours["bytes_read"], 1)
        for variant in ("bucketfs-listing", "bucketfs-noxattr"):
            lst = tools.get(variant)
            if lst and "raw" in tools:
                lst["vs_raw"] = better_ratio(lst["median"], tools["raw"]["median"], unit)

    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    env = {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "latency_ms": a.latency_ms,
        "runs": a.runs,
        "quick": bool(a.quick),
        "s3fs": sh(["s3fs", "--version"]).splitlines()[0:1],
        "rclone": sh(["rclone", "--version"]).splitlines()[0:1],
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]),
    }
    with open(a.stem + ".json", "w") as f:
        json.dump({"env": env, "summary": summary, "runs": rows}, f, indent=1)

    tools_seen = [t for t in TOOLS if any(t in v for v in summary.values())]
    out = []
    out.append(
        f"bucketfs benchmark, commit {env['commit']}, {env['cpus']} CPUs, "
        f"latency {a.latency_ms} ms, medians of {a.runs} runs"
        + (" (quick sizes)" if a.quick else "")
    )
    out.append("")
    head = ["workload", "unit"] + tools_seen + ["bucketfs / best peer", "bucketfs / raw"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for w in ORDER:
        if w not in summary:
            continue
        tools = summary[w]
        unit = next(iter(tools.values()))["unit"]
        cells = [LABEL.get(w, w), unit]
        for t in tools_seen:
            s = tools.get(t)
            cells.append(
                f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}-{fmt(s['max'], unit)})"
                if s
                else "-"
            )
        ours = tools.get("bucketfs", {})
        vp = ours.get("vs_best_peer")
        cells.append(f"{vp:.2f}x ({ours['best_peer']})" if vp else "-")
        vr = ours.get("vs_raw")
        cells.append(f"{vr:.2f}x" if vr else "-")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Ratios: above 1 means bucketfs is ahead (throughput ratio, or inverse time ratio).")
    if "raw-head" in tools_seen:
        out.append("raw-head: the raw client's listing plus a HeadObject per object (256 at a "
                   "time), the ceiling for POSIX `ls -l`; bucketfs / raw for `ls -l` uses it.")
    for (w, t), why in NOT_COMPARABLE.items():
        if t in summary.get(w, {}):
            out.append(f"Not in best peer for {LABEL.get(w, w)}: {t} ({why}).")
    out.append("")
    out.extend(targets(summary, a.latency_ms))
    out.append("")
    out.append("Daemon peak RSS (MiB) and CPU seconds, median run:")
    out.append("")
    mt = [t for t in tools_seen if not t.startswith("raw")]
    out.append("| workload | " + " | ".join(mt) + " |")
    out.append("|" + "---|" * (len(mt) + 1))
    for w in ORDER:
        if w not in summary:
            continue
        cells = [LABEL.get(w, w)]
        for t in mt:
            s = summary[w].get(t)
            cells.append(f"{s['peak_rss_mib']:.0f} MiB, {s['cpu_s']:.1f} s" if s else "-")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("bucketfs S3 requests per workload (median run):")
    out.append("")
    for w in ORDER:
        for t in ("bucketfs", "bucketfs-listing"):
            s = summary.get(w, {}).get(t)
            if not s:
                continue
            req = ", ".join(
                f"{op} {v['requests']}" for op, v in sorted(s["requests"].items())
            ) or "none"
            extra = ""
            if "fetched_per_byte_read" in s:
                extra = f"; {s['fetched_per_byte_read']:.1f} bytes fetched per byte read"
            if "close_s" in s:
                extra += f"; close returned after {s['close_s']:.2f} s"
            out.append(f"- {LABEL.get(w, w)} ({t}): {req}{extra}")
    with open(a.stem + ".md", "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
