#!/usr/bin/env python3
"""Collects the side-by-side run of bench/sidebyside/run (files in $WORK) into $OUT (JSON)
and prints the table. Every ratio is dialgate ÷ strongSwan, from figures of the same run."""
import json
import os
import platform
import subprocess
import sys
import time

work = os.environ["WORK"]
out = os.environ["OUT"]


def load(name):
    p = os.path.join(work, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def cpu(name):
    p = os.path.join(work, name + ".cpu")
    return float(open(p).read()) if os.path.exists(p) else None


def ratio(a, b):
    return a / b if a and b else None


def ike_side(name):
    r = load(name)
    if r is None:
        return None
    c = cpu(name)
    r["gateway_cpu_s"] = c
    r["setups_per_gateway_cpu_s"] = r["established"] / c if c else None
    return r


result = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": os.environ.get("COMMIT", ""),
    "machine": {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "strongswan": subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "strongswan-libcharon"], capture_output=True, text=True
        ).stdout,
    },
    "method": {
        "ike": "dialgate-bench ike-net in a client namespace, UDP over a veth pair to the gateway namespace; "
        "%s setups, window %s per thread, %s sender thread(s), unpaced; IKE_SA_INIT (x25519, AES-128-GCM/PRF-SHA256) + "
        "IKE_AUTH: PSK gateway auth, EAP-Identity, EAP-MSCHAPv2 with a plain password (strongSwan has no TOTP; "
        "dialgate users without a token), CP address, one CHILD_SA; one EAP user per setup; both gateways keep "
        "every IKE SA. dialgate: `dialgate run --listen` (UDP mode, CHILD_SAs logged, not installed). strongSwan: "
        "charon-systemd + swanctl, kernel-libipsec (SAs installed into userspace libipsec), install_routes = no, "
        "cookie_threshold 64 / cookie_threshold_ip 100000, log level 0. Bench and gateway share the 2 cores."
        % (os.environ.get("TUNNELS"), os.environ.get("WINDOW"), os.environ.get("THREADS")),
        "esp": "strongSwan: client charon (kernel-libipsec) -> gateway charon (kernel-libipsec, routes by "
        "kernel-netlink), ESP in UDP 4500, AES-128-GCM, iperf3 UDP -b 0 for %s s from the client namespace to "
        "an address of the gateway namespace through the tunnel, unpaced, then paced "
        "from the unpaced received rate up in steps of 1.5 x until the received rate stops growing; the best "
        "received rate counts, inner IP bytes. End to end: "
        "iperf3 client, both charons and the iperf3 server share the 2 cores. dialgate: dialgate-bench dataplane "
        "--workers 1 --tunnels 1 --sizes 64,1420 --quick (one worker core, in-memory ports, AES-128-GCM "
        "aws-lc-rs, inner IP bytes), same run." % os.environ.get("SECONDS_ESP"),
    },
}

d, s = ike_side("ike-dialgate.json"), ike_side("ike-strongswan.json")
if d and s:
    result["ike"] = {
        "dialgate": d,
        "strongswan": s,
        "ratio_setups_per_sec": ratio(d["setups_per_sec"], s["setups_per_sec"]),
        "ratio_setups_per_gateway_cpu_s": ratio(d["setups_per_gateway_cpu_s"], s["setups_per_gateway_cpu_s"]),
        "target_ratio": 5.0,
    }

dp = load("dp/results.json")
esp = []
for size in (1420, 64):
    runs = []
    k = 0
    while True:
        ip = load("iperf-%d-%d.json" % (size, k))
        if ip is None:
            break
        rx = ip["end"]["sum_received"]
        pps = rx["bytes"] / (size - 28) / rx["seconds"]
        offered = ip["start"]["test_start"].get("target_bitrate", 0) if "start" in ip else 0
        gw_cpu = cpu("iperf-%d-%d.json" % (size, k))
        runs.append(
            {
                "offered_payload_bps": offered,
                "rx_pps": pps,
                "rx_mbps": pps * size * 8 / 1e6,
                "lost_percent": rx.get("lost_percent"),
                "gateway_cpu_s": gw_cpu,
                # Packets the gateway delivered per second of its own CPU time.
                "rx_pps_per_gateway_cpu_s": pps * rx["seconds"] / gw_cpu if gw_cpu else None,
            }
        )
        k += 1
    if not runs or dp is None:
        continue
    best = max(runs, key=lambda r: r["rx_pps"])
    swan_mbps, swan_pps = best["rx_mbps"], best["rx_pps"]
    per_cpu = best["rx_pps_per_gateway_cpu_s"]
    row = {
        "size": size,
        "strongswan": {
            "mbps": swan_mbps,
            "pps": swan_pps,
            "lost_percent": best["lost_percent"],
            "gateway_cpu_s": best["gateway_cpu_s"],
            "pps_per_gateway_cpu_s": per_cpu,
            "mbps_per_gateway_cpu_s": per_cpu * size * 8 / 1e6 if per_cpu else None,
            "runs": runs,
        },
    }
    for t in dp["dataplane"]["throughput"]:
        if t["workers"] == 1 and t["tunnels"] == 1 and t["size"] == str(size) and t["mode"] in ("seal", "open"):
            row["dialgate_" + t["mode"]] = {"mbps": t["gbps"] * 1000, "pps": t["mpps"] * 1e6}
    if "dialgate_open" in row:
        row["ratio_open"] = ratio(row["dialgate_open"]["mbps"], swan_mbps)
        row["ratio_open_per_gateway_cpu_s"] = ratio(row["dialgate_open"]["pps"], per_cpu)
    if "dialgate_seal" in row:
        row["ratio_seal"] = ratio(row["dialgate_seal"]["mbps"], swan_mbps)
    esp.append(row)
if esp:
    result["esp"] = esp
    result["esp_target_ratio"] = 20.0

os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(result, f, indent=2)


def f(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


print()
if "ike" in result:
    i = result["ike"]
    print("IKE+EAP-MSCHAPv2 setups (same bench, same network, %s setups)" % d["tunnels"])
    print("| gateway | established | failed | setups/s | p50 ms | p99 ms | gateway CPU s | setups per gateway CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in (("dialgate (UDP mode)", d), ("strongSwan charon", s)):
        print(
            "| %s | %d | %d | %s | %.1f | %.1f | %s | %s |"
            % (
                name,
                r["established"],
                r["failures"],
                f(r["setups_per_sec"]),
                r["setup_time"]["p50_us"] / 1000,
                r["setup_time"]["p99_us"] / 1000,
                f(r["gateway_cpu_s"], "{:.2f}"),
                f(r["setups_per_gateway_cpu_s"]),
            )
        )
    print(
        "| ratio dialgate / strongSwan | | | **%s** | | | | **%s** |"
        % (f(i["ratio_setups_per_sec"], "{:.2f}×"), f(i["ratio_setups_per_gateway_cpu_s"], "{:.2f}×"))
    )
    print("(target ≥ 5×)")
    print()
if esp:
    print("ESP throughput: strongSwan kernel-libipsec end to end (client + gateway on this box) vs dialgate one worker core")
    print(
        "| inner size | strongSwan Mbit/s | strongSwan pps | strongSwan gw CPU s | strongSwan pps per gw CPU s "
        "| dialgate open Mbit/s | dialgate open pps | dialgate seal Mbit/s | ratio open | ratio seal "
        "| ratio open per gw CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in esp:
        o, se, sw = r.get("dialgate_open", {}), r.get("dialgate_seal", {}), r["strongswan"]
        print(
            "| %d | %s | %s | %s | %s | %s | %s | %s | **%s** | %s | %s |"
            % (
                r["size"],
                f(sw["mbps"], "{:,.1f}"),
                f(sw["pps"]),
                f(sw.get("gateway_cpu_s"), "{:.2f}"),
                f(sw.get("pps_per_gateway_cpu_s")),
                f(o.get("mbps")),
                f(o.get("pps")),
                f(se.get("mbps")),
                f(r.get("ratio_open"), "{:.1f}×"),
                f(r.get("ratio_seal"), "{:.1f}×"),
                f(r.get("ratio_open_per_gateway_cpu_s"), "{:.1f}×"),
            )
        )
    print("(target ≥ 20×)")
print("written: %s" % out, file=sys.stderr)
