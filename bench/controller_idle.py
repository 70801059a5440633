#!/usr/bin/env python3
"""Helpers for bench/controller-idle.sh (stdlib only).

  controller_idle.py manifests --objects N --completed K --future TS
        --policy FILE --cutover FILE --crs OUT --configmaps OUT
                                   the N policies + N cutovers, and N ConfigMaps
                                   of the same size for the API server's floor
  controller_idle.py split-members --objects N CSV OUTDIR
                                   member CSV -> OUTDIR/realm-NNN.csv (row i to realm i mod N)
  controller_idle.py sample PID SECONDS OUT
                                   /proc/PID/status every second for SECONDS
  controller_idle.py summary OUT   KEY=VALUE words from a sample file for lib.sh's record
  controller_idle.py smaps PID     where the RSS of PID lives, by kind of mapping
  controller_idle.py watch --kubeconfig-json F --path P --until ready|phase|exists
        --count N --ready FILE --out FILE
                                   list + watch one collection on the API server; when did
                                   each of N objects first meet the condition
  controller_idle.py metrics PREFIX BEFORE AFTER
                                   KEY=VALUE words from two /metrics scrapes: reconciles,
                                   errors and reconcile seconds by kind between them
  controller_idle.py check POLICIES.json CUTOVERS.json PER_REALM
                                   every policy Ready with its member count, every
                                   cutover at its expected phase with its progress
  controller_idle.py report RESULTS.jsonl
                                   the per-run and median tables, ratios, verdict
"""

import json
import os
import statistics
import sys
import time

TARGET_RSS_MIB = 32


def med(values):
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- manifests

def manifests(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="controller_idle.py manifests")
    ap.add_argument("--objects", type=int, required=True)
    ap.add_argument("--completed", type=int, required=True)
    ap.add_argument("--future", required=True, help="`at` of the Scheduled cutovers (RFC 3339)")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--cutover", required=True)
    ap.add_argument("--crs", required=True)
    ap.add_argument("--configmaps", required=True)
    a = ap.parse_args(argv)
    policy = open(a.policy, encoding="utf-8").read()
    cutover = open(a.cutover, encoding="utf-8").read()

    def replace_line(text, old, new):
        lines = text.split("\n")
        hits = [i for i, line in enumerate(lines) if line == old]
        if len(hits) != 1:
            sys.exit(f"manifests: expected exactly one line {old!r}, found {len(hits)}")
        lines[hits[0]] = new
        return "\n".join(lines)

    docs, cms = [], []
    for i in range(a.objects):
        realm = f"realm-{i:03d}"
        expect = "Completed" if i < a.completed else "Scheduled"
        p = replace_line(policy, "  name: wakwak", f"  name: {realm}")
        p = replace_line(p, "  realm: wakwak", f"  realm: {realm}")
        c = replace_line(cutover, "  name: split-login-2018",
                         f"  name: split-{i:03d}\n  labels:\n    credshift.bench/expect: {expect}")
        c = replace_line(c, "    name: wakwak", f"    name: {realm}")
        if expect == "Scheduled":
            c = replace_line(c, '  at: "2018-04-18T00:00:00+09:00"', f'  at: "{a.future}"')
        docs += [p.strip("\n"), c.strip("\n")]
        # A ConfigMap carrying the policy's text: the same bytes through the
        # same apply, without a controller behind it.
        cms.append("apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                   f"  name: cm-{i:03d}\ndata:\n  policy.yaml: {json.dumps(p)}\n"
                   f"  cutover.yaml: {json.dumps(c)}")
    with open(a.crs, "w", encoding="utf-8") as f:
        f.write("\n---\n".join(docs) + "\n")
    with open(a.configmaps, "w", encoding="utf-8") as f:
        f.write("\n---\n".join(cms) + "\n")


def split_members(argv):
    import csv

    if len(argv) != 4 or argv[0] != "--objects":
        sys.exit("usage: split-members --objects N CSV OUTDIR")
    n, src, outdir = int(argv[1]), argv[2], argv[3]
    os.makedirs(outdir, exist_ok=True)
    files = [open(os.path.join(outdir, f"realm-{i:03d}.csv"), "w", encoding="utf-8", newline="")
             for i in range(n)]
    writers = [csv.writer(f, lineterminator="\n") for f in files]
    with open(src, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        for w in writers:
            w.writerow(header)
        for i, row in enumerate(rows):
            writers[i % n].writerow(row)
    for f in files:
        f.close()


# ---------------------------------------------------------------- RSS

STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_status(pid):
    out = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in STATUS_KEYS:
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_ticks"] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def sample(argv):
    pid, seconds, out = int(argv[0]), int(argv[1]), argv[2]
    start = time.monotonic()
    with open(out, "w", encoding="utf-8") as f:
        for i in range(seconds + 1):
            # One sample at 0, 1, …, SECONDS s after the start, without drift.
            delay = start + i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                s = read_status(pid)
            except (FileNotFoundError, ProcessLookupError):
                sys.exit(f"sample: process {pid} is gone after {i} s")
            s["t"] = round(time.monotonic() - start, 3)
            f.write(json.dumps(s) + "\n")
            f.flush()


def summary(argv):
    rows = [json.loads(line) for line in open(argv[0], encoding="utf-8") if line.strip()]
    if len(rows) < 2:
        sys.exit(f"summary: {len(rows)} samples in {argv[0]}")
    rss = [r["VmRSS"] for r in rows]
    k = max(1, min(10, len(rows) // 4))
    words = {
        "samples": len(rows),
        "rss_med_kib": int(med(rss)),
        "rss_max_kib": max(rss),
        "rss_min_kib": min(rss),
        "hwm_kib": rows[-1]["VmHWM"],
        "anon_med_kib": int(med([r["RssAnon"] for r in rows])),
        "file_med_kib": int(med([r["RssFile"] for r in rows])),
        "threads": rows[-1]["Threads"],
        # Growth over the window: the last k samples against the first k.
        "growth_kib": int(med(rss[-k:]) - med(rss[:k])),
        "idle_cpu_s": f"{(rows[-1]['cpu_ticks'] - rows[0]['cpu_ticks']) / CLK_TCK:.2f}",
        "idle_s": f"{rows[-1]['t'] - rows[0]['t']:.1f}",
    }
    print(" ".join(f"{k}={v}" for k, v in words.items()))


def smaps(argv):
    """Resident KiB by kind of mapping, from /proc/PID/smaps."""
    pid = int(argv[0])
    exe = os.path.realpath(f"/proc/{pid}/exe")
    groups = {}
    sizes = {}
    cur = None
    prev_guard = False
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                size_kib = (hi - lo) // 1024
                path = head[5] if len(head) > 5 else ""
                perms = head[1]
                if path.startswith("/") and os.path.realpath(path) == exe:
                    kind = {"r-xp": "credshift binary: code (.text)",
                            "r--p": "credshift binary: read-only data (.rodata, .eh_frame, …)"
                            }.get(perms, "credshift binary: writable data (.data, .bss, relro)")
                elif path == "[heap]":
                    kind = "[heap] (brk: main malloc arena)"
                elif path == "[stack]":
                    kind = "[stack] (main thread)"
                elif path.startswith("["):
                    kind = path
                elif path:
                    kind = "shared libraries and other files"
                elif perms.startswith("---"):
                    kind = "guard pages / reserved (---p)"
                elif size_kib in (2048, 8192) and prev_guard:
                    kind = f"anonymous {size_kib // 1024} MiB after a guard page (thread stacks)"
                else:
                    kind = "other anonymous (malloc arenas and mmap'd blocks, TLS)"
                prev_guard = perms.startswith("---") and size_kib == 4
                cur = kind
                sizes[kind] = sizes.get(kind, 0) + size_kib
                groups.setdefault(kind, 0)
            elif head[0] == "Rss:" and cur is not None:
                groups[cur] += int(head[1])
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        rollup = {l.split(":")[0]: l.split(":")[1].strip() for l in f if ":" in l and "-" not in l.split(":")[0]}
    print(f"{'resident KiB':>12} {'mapped KiB':>11}  kind")
    for kind, rss in sorted(groups.items(), key=lambda kv: -kv[1]):
        if rss or "binary: code" in kind:
            print(f"{rss:>12} {sizes[kind]:>11}  {kind}")
    print(f"smaps_rollup: Rss {rollup.get('Rss')}, Pss {rollup.get('Pss')}, "
          f"Anonymous {rollup.get('Anonymous')}, Private_Dirty {rollup.get('Private_Dirty')}, "
          f"Shared_Clean {rollup.get('Shared_Clean')}")
    tasks = os.listdir(f"/proc/{pid}/task")
    names = {}
    for t in tasks:
        try:
            n = open(f"/proc/{pid}/task/{t}/comm", encoding="utf-8").read().strip()
        except OSError:
            continue
        names[n] = names.get(n, 0) + 1
    print(f"threads: {len(tasks)} (" + ", ".join(f"{n} ×{c}" for n, c in sorted(names.items())) + ")")


# ---------------------------------------------------------------- watch

def _met(until, obj):
    st = obj.get("status") or {}
    if until == "exists":
        return True
    if until == "ready":
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in st.get("conditions") or [])
    if until == "phase":  # the phase named by the object's label
        expect = ((obj.get("metadata") or {}).get("labels") or {}).get("credshift.bench/expect")
        return expect is not None and st.get("phase") == expect
    raise ValueError(until)


def _api(kubeconfig_json, tmpdir):
    """(host, port, ssl context, headers) from `kubectl config view --raw --minify -o json`."""
    import base64
    import ssl
    import urllib.parse

    cfg = json.load(open(kubeconfig_json, encoding="utf-8"))
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context()
    ca = os.path.join(tmpdir, "ca.crt")
    with open(ca, "wb") as f:
        f.write(base64.b64decode(cluster["certificate-authority-data"]))
    ctx.load_verify_locations(ca)
    headers = {"Accept": "application/json"}
    if "client-certificate-data" in user:
        crt, key = os.path.join(tmpdir, "client.crt"), os.path.join(tmpdir, "client.key")
        with open(crt, "wb") as f:
            f.write(base64.b64decode(user["client-certificate-data"]))
        with open(key, "wb") as f:
            f.write(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(crt, key)
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    u = urllib.parse.urlsplit(cluster["server"])
    return u.hostname, u.port or 443, ctx, headers


def watch(argv):
    """Lists one kind in one namespace, then watches it from the list's
    resourceVersion (nothing is missed between the two), straight from the
    API server (no kubectl: no process start in the measured time). Touches
    --ready once the watch is open; writes to --out, once all --count objects
    have met --until, the first time (ns since the epoch) each did: first,
    median and last; and per object the time from the watch first seeing it
    to it meeting --until (ns): median and max. Exits 1 when the watch ends first (--timeout)."""
    import argparse
    import http.client

    ap = argparse.ArgumentParser(prog="controller_idle.py watch")
    ap.add_argument("--kubeconfig-json", required=True)
    ap.add_argument("--path", required=True,
                    help="collection path, e.g. /api/v1/namespaces/NS/configmaps")
    ap.add_argument("--until", choices=["ready", "phase", "exists"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args(argv)
    host, port, ctx, headers = _api(a.kubeconfig_json, os.path.dirname(os.path.abspath(a.out)))
    first_met = {}
    first_seen = {}

    def see(obj, now):
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            return
        first_seen.setdefault(name, now)
        if name not in first_met and _met(a.until, obj):
            first_met[name] = now

    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=a.timeout + 30)
    conn.request("GET", a.path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        sys.exit(f"watch: GET {a.path}: {resp.status} {body[:300]!r}")
    lst = json.loads(body)
    now = time.time_ns()
    for obj in lst.get("items", []):
        see(obj, now)
    rv = lst["metadata"]["resourceVersion"]
    conn.request("GET", f"{a.path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
                 f"&timeoutSeconds={a.timeout}", headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"watch: watch {a.path}: {resp.status} {resp.read()[:300]!r}")
    open(a.ready, "w").close()
    while len(first_met) < a.count:
        line = resp.readline()
        if not line:
            sys.exit(f"watch {a.path}: ended (timeout {a.timeout} s?) with "
                     f"{len(first_met)}/{a.count} met")
        now = time.time_ns()
        ev = json.loads(line)
        if ev.get("type") in ("ADDED", "MODIFIED"):
            see(ev["object"], now)
        elif ev.get("type") == "ERROR":
            sys.exit(f"watch {a.path}: {ev.get('object')}")
    conn.close()
    times = sorted(first_met.values())
    # Per object: from the watch first seeing it (created) to it meeting the condition.
    lat = sorted(first_met[n] - first_seen[n] for n in first_met)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"first": times[0], "median": times[len(times) // 2], "last": times[-1],
                   "count": len(times), "latency_median": lat[len(lat) // 2],
                   "latency_max": lat[-1]}, f)


# ---------------------------------------------------------------- metrics

def _scrape(path):
    import re

    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path, encoding="utf-8"):
        m = re.match(r'credshift_(reconciles_total|reconcile_errors_total|reconcile_duration_seconds_sum)'
                     r'\{kind="Credential(Policy|Cutover)"[^}]*\} ([0-9.e+-]+)$', line.strip())
        if m:
            key = (m.group(1), m.group(2).lower())
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def metrics(argv):
    prefix, before, after = argv[0], _scrape(argv[1]), _scrape(argv[2])
    words = {}
    for kind in ("policy", "cutover"):
        n = after.get(("reconciles_total", kind), 0) - before.get(("reconciles_total", kind), 0)
        err = (after.get(("reconcile_errors_total", kind), 0)
               - before.get(("reconcile_errors_total", kind), 0))
        secs = (after.get(("reconcile_duration_seconds_sum", kind), 0)
                - before.get(("reconcile_duration_seconds_sum", kind), 0))
        words[f"{prefix}_{kind}_reconciles"] = int(n)
        words[f"{prefix}_{kind}_errors"] = int(err)
        words[f"{prefix}_{kind}_ms"] = f"{1000 * secs / n:.1f}" if n else "0.0"
    print(" ".join(f"{k}={v}" for k, v in words.items()))


# ---------------------------------------------------------------- check

def check(argv):
    policies = json.load(open(argv[0], encoding="utf-8"))["items"]
    cutovers = json.load(open(argv[1], encoding="utf-8"))["items"]
    per_realm = int(argv[2])
    bad = []
    for p in policies:
        st = p.get("status") or {}
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            bad.append(f"policy {p['metadata']['name']}: not Ready: {ready}")
        # Sizes differ by one when the member count does not divide evenly.
        if abs(st.get("accounts", -1) - per_realm) > 1:
            bad.append(f"policy {p['metadata']['name']}: status.accounts {st.get('accounts')}, "
                       f"expected {per_realm}")
    for c in cutovers:
        st = c.get("status") or {}
        expect = c["metadata"]["labels"]["credshift.bench/expect"]
        if st.get("phase") != expect:
            bad.append(f"cutover {c['metadata']['name']}: phase {st.get('phase')}, expected {expect}")
        prog = st.get("progress") or {}
        if expect == "Completed" and (prog.get("done") != prog.get("total")
                                      or abs(prog.get("total", -1) - per_realm) > 1):
            bad.append(f"cutover {c['metadata']['name']}: progress {prog}, expected {per_realm}")
    if bad:
        print("\n".join(bad[:20]), file=sys.stderr)
        sys.exit(1)
    print(f"checked: {len(policies)} policies Ready, {len(cutovers)} cutovers at their expected phase")


# ---------------------------------------------------------------- report

PHASES = [
    ("zero", "0 objects, members"),
    ("objects", "100+100 objects, members"),
    ("emptystore", "100+100 objects, empty store"),
]


def mib(kib):
    return kib / 1024


def in_order(by, runs, phases):
    """(run, phase, row) by run, then phase."""
    for run in runs:
        for ph in phases:
            for r in by.get(ph, []):
                if r["run"] == run:
                    yield run, ph, r


def report(argv):
    rows = [json.loads(line) for line in open(argv[0], encoding="utf-8") if line.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["phase"], []).append(r)
    runs = sorted({r["run"] for r in rows})
    label = dict(PHASES)

    print("## Idle RSS per run (MiB; VmRSS sampled every second over the idle window)")
    print(f"{'run':>3} {'controller':<30} {'members':>8} {'objects':>7} {'RSS med':>8} {'max':>6} "
          f"{'VmHWM':>6} {'anon':>6} {'file':>6} {'grow':>6} {'threads':>7} {'idle CPU s':>10} "
          f"{'start→ready s':>13}")
    for run, ph, r in in_order(by, runs, label):
        print(f"{run:>3} {label[ph]:<30} {r['members']:>8} {r['objects']:>7} "
              f"{mib(r['rss_med_kib']):>8.1f} {mib(r['rss_max_kib']):>6.1f} "
              f"{mib(r['hwm_kib']):>6.1f} {mib(r['anon_med_kib']):>6.1f} "
              f"{mib(r['file_med_kib']):>6.1f} {mib(r['growth_kib']):>6.1f} "
              f"{r['threads']:>7} {r['idle_cpu_s']:>10.2f} {r['t_start_ready']:>13.2f}")
    print()

    timed_phases = [ph for ph in ("objects", "emptystore") if by.get(ph)]
    if timed_phases:
        print("## kubectl apply → Ready per run (seconds from the start of `kubectl apply`;")
        print("## half/all = until half of / all the 100 objects of a kind were seen so by a watch)")
        print(f"{'run':>3} {'controller':<30} {'apply':>6} {'policies half':>13} {'all':>6} "
              f"{'cutovers half':>13} {'all':>6} {'everything':>10} | {'ConfigMaps':>10} {'ratio':>6} | "
              f"{'no ctrl apply':>13} {'seen':>6} {'ratio':>6}")
        for run, ph, r in in_order(by, runs, timed_phases):
            cm = r["cm_visible"]
            print(f"{run:>3} {label[ph]:<30} {r['t_apply']:>6.2f} {r['t_policies_med']:>13.2f} "
                  f"{r['t_policies']:>6.2f} {r['t_cutovers_med']:>13.2f} {r['t_cutovers']:>6.2f} "
                  f"{r['t_all']:>10.2f} | {cm:>10.2f} {r['t_all'] / cm:>6.2f} | "
                  f"{r['crf_apply']:>13.2f} {r['crf_visible']:>6.2f} "
                  f"{r['t_all'] / r['crf_visible']:>6.2f}")
        print("everything = until every policy was Ready and every cutover at its phase")
        print("ConfigMaps = one apply of 200 ConfigMaps holding the same YAML, until a watch saw all")
        print("  of them (the API server's floor); ratio = everything / ConfigMaps")
        print("no ctrl = one apply of the same 200 objects into a namespace no controller watches,")
        print("  until a watch saw all of them; ratio = everything / seen")
        print()
        print("## Per object: from its creation (as a watch saw it) to Ready / its phase (seconds)")
        print(f"{'run':>3} {'controller':<30} {'policy median':>13} {'max':>6} {'cutover median':>14} {'max':>6}")
        for run, ph, r in in_order(by, runs, timed_phases):
            print(f"{run:>3} {label[ph]:<30} {r['l_policies_med']:>13.3f} "
                  f"{r['l_policies_max']:>6.3f} {r['l_cutovers_med']:>14.3f} "
                  f"{r['l_cutovers_max']:>6.3f}")
        print()

    if any("apply_policy_reconciles" in r for r in rows):
        print("## Reconciles (from the controller's /metrics): count, errors, mean ms each;")
        print("## 'apply' = from the controller's start until every object was at its phase, 'idle' = the idle window")
        print(f"{'run':>3} {'controller':<30} {'apply: policy':>14} {'cutover':>14} {'idle: policy':>14} "
              f"{'cutover':>14}")
        for run, ph, r in in_order(by, runs, label):
            cells = []
            for w in ("apply", "idle"):
                for kind in ("policy", "cutover"):
                    n = r.get(f"{w}_{kind}_reconciles", 0)
                    e = r.get(f"{w}_{kind}_errors", 0)
                    ms = r.get(f"{w}_{kind}_ms", 0.0)
                    cells.append(f"{n}/{e}/{ms:.0f}ms" if n else "0")
            print(f"{run:>3} {label[ph]:<30} " + " ".join(f"{c:>14}" for c in cells))
        print()

    print(f"## Medians over {len(runs)} run(s)")

    def m(ph, key, f=lambda x: x):
        return med([f(r[key]) for r in by.get(ph, []) if key in r])

    zero = m("zero", "rss_med_kib", mib)
    for ph, lab in PHASES:
        if not by.get(ph):
            continue
        print(f"{lab:<30} idle RSS {m(ph, 'rss_med_kib', mib):6.1f} MiB (max {m(ph, 'rss_max_kib', mib):.1f},"
              f" VmHWM {m(ph, 'hwm_kib', mib):.1f}, anon {m(ph, 'anon_med_kib', mib):.1f},"
              f" file {m(ph, 'file_med_kib', mib):.1f}); threads {m(ph, 'threads'):.0f};"
              f" idle CPU {m(ph, 'idle_cpu_s'):.2f} s over {m(ph, 'idle_s'):.0f} s")
    print()
    if by.get("objects"):
        rss = m("objects", "rss_med_kib", mib)
        ok = rss <= TARGET_RSS_MIB
        print(f"target: controller idle with 100 policies and 100 cutovers, RSS ≤ {TARGET_RSS_MIB} MiB: "
              f"{'met' if ok else 'MISSED'} (median idle VmRSS {rss:.1f} MiB; "
              f"VmHWM {m('objects', 'hwm_kib', mib):.1f} MiB)")
        # Ratios per run, side by side in the same run, then their median.
        pairs = []
        for run in runs:
            z = [r for r in by.get("zero", []) if r["run"] == run]
            o = [r for r in by["objects"] if r["run"] == run]
            if z and o:
                pairs.append(o[0]["rss_med_kib"] / z[0]["rss_med_kib"])
        if pairs:
            print(f"ratio idle RSS, 100+100 objects / 0 objects (same store, same run): {med(pairs):.2f} "
                  f"(per run: {', '.join(f'{p:.2f}' for p in pairs)}; "
                  f"+{mib(m('objects', 'rss_med_kib') - m('zero', 'rss_med_kib')):.1f} MiB for 200 objects)")
    if by.get("emptystore") and by.get("zero"):
        pairs = []
        for run in runs:
            z = [r for r in by["zero"] if r["run"] == run]
            e = [r for r in by["emptystore"] if r["run"] == run]
            if z and e:
                pairs.append(e[0]["rss_med_kib"] / z[0]["rss_med_kib"])
        print(f"ratio idle RSS, 100+100 objects on an empty store / 0 objects on the member store: "
              f"{med(pairs):.2f}")
    for ph in timed_phases:
        rs = by[ph]
        ratios = [r["t_all"] / r["cm_visible"] for r in rs]
        line = (f"{label[ph]}: everything {m(ph, 't_all'):.2f} s after the start of kubectl apply "
                f"(apply itself {m(ph, 't_apply'):.2f} s; all policies Ready {m(ph, 't_policies'):.2f} s, "
                f"half {m(ph, 't_policies_med'):.2f} s; all cutovers at their phase "
                f"{m(ph, 't_cutovers'):.2f} s, half {m(ph, 't_cutovers_med'):.2f} s)")
        print(line)
        print(f"  per object, creation → Ready: policy median {m(ph, 'l_policies_med'):.3f} s "
              f"(max {m(ph, 'l_policies_max'):.3f} s); creation → phase: cutover median "
              f"{m(ph, 'l_cutovers_med'):.3f} s (max {m(ph, 'l_cutovers_max'):.3f} s)")
        if ratios:
            print(f"  vs 200 ConfigMaps apply→seen {m(ph, 'cm_visible'):.2f} s (kubectl apply "
                  f"{m(ph, 'cm_apply'):.2f} s): ratio {med(ratios):.2f} (median of per-run ratios)")
            cr = [r["t_all"] / r["crf_visible"] for r in rs]
            print(f"  vs the same 200 objects with no controller, apply→seen {m(ph, 'crf_visible'):.2f} s "
                  f"(kubectl apply {m(ph, 'crf_apply'):.2f} s): ratio {med(cr):.2f}")
    if zero == zero:  # not NaN
        print(f"0 objects: idle RSS {zero:.1f} MiB is the floor of the process itself")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, argv = sys.argv[1], sys.argv[2:]
    fns = {"manifests": manifests, "split-members": split_members, "sample": sample,
           "summary": summary, "smaps": smaps, "watch": watch, "metrics": metrics, "check": check, "report": report}
    if cmd not in fns:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fns[cmd](argv)


if __name__ == "__main__":
    main()
