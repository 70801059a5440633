#!/usr/bin/env python3
"""Numbers for the benchmark scripts (stdlib only).

  report.py batches LOG            per-batch stats from a `credshift apply
                                   --log credshift=debug` log (JSON or text),
                                   as KEY=VALUE words for lib.sh's `record`
  report.py cutover RESULTS.jsonl  the cutover table (medians, ratio, targets)
  report.py import RESULTS.jsonl   the import table
  report.py verify RESULTS.jsonl   the verify-throughput table
  report.py overload RESULTS.jsonl the goodput-under-overload table
"""

import json
import math
import re
import statistics
import sys

TARGET_RSS_MIB = 64
# Members must never wait long behind a batch.
TARGET_P99_MS = 100
TARGET_VERIFY_SHARE = 0.95
# Under 3x overload, the goodput the shedding must keep.
TARGET_OVERLOAD_SHARE = 0.90


def target_ratio(db, accounts):
    """credshift/baseline a cutover must reach: SQLite ≤ 0.8 (it beats the
    one big transaction, and must keep letting members' writes in);
    PostgreSQL ≤ 1.10 at 1,000,000 accounts and more, ≤ 1.25 below."""
    if db == "sqlite":
        return 0.8
    return 1.10 if accounts >= 1_000_000 else 1.25

TEXT_MICROS = re.compile(r"backfill batch committed.*?\bmicros=(\d+)")
TEXT_ACCOUNTS = re.compile(r"\baccounts=(\d+)")


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def batches(path):
    micros, accounts = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "backfill batch committed" not in line:
                continue
            line = line.strip()
            if line.startswith("{"):
                ev = json.loads(line)
                fields = ev.get("fields", ev)
                micros.append(int(fields["micros"]))
                accounts += int(fields.get("accounts", 0))
            else:
                m = TEXT_MICROS.search(line)
                if m:
                    micros.append(int(m.group(1)))
                    a = TEXT_ACCOUNTS.search(line)
                    accounts += int(a.group(1)) if a else 0
    if not micros:
        print(f"{path}: no 'backfill batch committed' lines (is the log at credshift=debug?)",
              file=sys.stderr)
        sys.exit(2)
    s = sorted(micros)
    words = {
        "batches": len(s),
        "batch_accounts": accounts,
        "p50_ms": f"{percentile(s, 50) / 1000:.3f}",
        "p90_ms": f"{percentile(s, 90) / 1000:.3f}",
        "p99_ms": f"{percentile(s, 99) / 1000:.3f}",
        "max_ms": f"{s[-1] / 1000:.3f}",
        "first_ms": f"{micros[0] / 1000:.3f}",
        "sum_batches_s": f"{sum(s) / 1e6:.3f}",
    }
    print(" ".join(f"{k}={v}" for k, v in words.items()))


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def med(values):
    return statistics.median(values) if values else float("nan")


def verdict(ok):
    return "met" if ok else "MISSED"


def written(b, c):
    """SQLite: what the two processes wrote to storage; PostgreSQL: the WAL
    the server wrote during each (pg_stat_wal)."""
    if "written_mib" not in c:
        return "-"
    return f"{b['written_mib']:.0f}/{c['written_mib']:.0f}"


def cutover(path):
    rows = load(path)
    dbs = [d for d in ("sqlite", "postgres") if any(r["db"] == d for r in rows)]
    print("## Per run (wall seconds; RSS MiB; batch times ms)")
    print(f"{'db':<9} {'run':>3} {'order':<8} {'accounts':>9} {'baseline s':>10} {'credshift s':>11} "
          f"{'ratio':>6} {'RSS MiB':>8} {'batches':>7} {'p50':>8} {'p99':>8} {'max':>8} "
          f"{'Σbatch s':>9} {'other s':>8} {'written MiB b/c':>16}")
    for db in dbs:
        for run in sorted({r["run"] for r in rows if r["db"] == db}):
            b = next(r for r in rows if r["db"] == db and r["run"] == run and r["kind"] == "baseline")
            c = next(r for r in rows if r["db"] == db and r["run"] == run and r["kind"] == "credshift")
            print(f"{db:<9} {run:>3} {c['order']:<8} {c['accounts']:>9} {b['wall']:>10.2f} "
                  f"{c['wall']:>11.2f} {c['wall'] / b['wall']:>6.2f} {c['rss_kib'] / 1024:>8.1f} "
                  f"{c['batches']:>7} {c['p50_ms']:>8.1f} {c['p99_ms']:>8.1f} {c['max_ms']:>8.1f} "
                  f"{c['sum_batches_s']:>9.2f} {c['wall'] - c['sum_batches_s']:>8.2f} "
                  f"{written(b, c):>16}")
    print()
    print("## Medians")
    print(f"{'db':<9} {'accounts':>9} {'runs':>4} {'baseline s':>10} {'credshift s':>11} "
          f"{'ratio':>6} {'target':<13} {'RSS MiB':>8} {'(≤64)':<7} {'p99 ms':>7} {'(≤100)':<7} "
          f"{'accounts/s':>10}")
    for db in dbs:
        runs = sorted({r["run"] for r in rows if r["db"] == db})
        pairs = []
        for run in runs:
            b = next(r for r in rows if r["db"] == db and r["run"] == run and r["kind"] == "baseline")
            c = next(r for r in rows if r["db"] == db and r["run"] == run and r["kind"] == "credshift")
            pairs.append((b, c))
        base = med([b["wall"] for b, _ in pairs])
        cred = med([c["wall"] for _, c in pairs])
        ratio = med([c["wall"] / b["wall"] for b, c in pairs])
        rss = med([c["rss_kib"] / 1024 for _, c in pairs])
        p99 = med([c["p99_ms"] for _, c in pairs])
        n = pairs[0][1]["accounts"]
        target = target_ratio(db, n)
        print(f"{db:<9} {n:>9} {len(pairs):>4} {base:>10.2f} {cred:>11.2f} {ratio:>6.2f} "
              f"{'≤' + format(target, '.2f') + ' ' + verdict(ratio <= target):<13} {rss:>8.1f} {verdict(rss <= TARGET_RSS_MIB):<7} "
              f"{p99:>7.1f} {verdict(p99 <= TARGET_P99_MS):<7} {n / cred:>10.0f}")
    print()
    print("ratio = median over runs of credshift/baseline, each pair on fresh copies of the same")
    print("data in the same run; 'other s' = credshift wall minus the sum of its batch")
    print("transactions (process start, migrations check, ANALYZE, counting, status output);")
    print("'written MiB b/c' = baseline / credshift: on SQLite what the process wrote to storage,")
    print("on PostgreSQL the WAL the server wrote (pg_stat_wal).")


def imports(path):
    rows = load(path)
    dbs = [d for d in ("sqlite", "postgres") if any(r["db"] == d for r in rows)]
    print("## Per run")
    print(f"{'db':<9} {'run':>3} {'rows':>9} {'bulk SQL s':>10} {'import s':>9} {'ratio':>6} "
          f"{'rows/s':>9} {'RSS MiB':>8}")
    for r in rows:
        print(f"{r['db']:<9} {r['run']:>3} {r['rows']:>9} {r['baseline']:>10.2f} {r['wall']:>9.2f} "
              f"{r['wall'] / r['baseline']:>6.2f} {r['rows'] / r['wall']:>9.0f} {r['rss_kib'] / 1024:>8.1f}")
    print()
    print("## Medians")
    print(f"{'db':<9} {'rows':>9} {'runs':>4} {'bulk SQL s':>10} {'import s':>9} {'ratio':>6} "
          f"{'rows/s':>9} {'RSS MiB':>8} {'max RSS':>8}")
    for db in dbs:
        rs = [r for r in rows if r["db"] == db]
        wall = med([r["wall"] for r in rs])
        print(f"{db:<9} {rs[0]['rows']:>9} {len(rs):>4} {med([r['baseline'] for r in rs]):>10.2f} "
              f"{wall:>9.2f} {med([r['wall'] / r['baseline'] for r in rs]):>6.2f} "
              f"{rs[0]['rows'] / wall:>9.0f} {med([r['rss_kib'] / 1024 for r in rs]):>8.1f} "
              f"{max(r['rss_kib'] / 1024 for r in rs):>8.1f}")
    print()
    print("ratio = median over runs of import/bulk SQL, each on an empty store in the same run.")


def verifies(path):
    rows = load(path)
    print("## Per run (verifies per second; each figure the median of its window pairs)")
    print(f"{'db':<9} {'run':>3} {'raw':>7} {'API':>7} {'API/raw':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'| cutover: raw':>14} {'API':>7} {'API/raw':>8} {'p99 ms':>7} {'pairs':>5} {'failed':>6}")
    for r in rows:
        print(f"{r['db']:<9} {r['run']:>3} {r['raw']:>7.1f} {r['api']:>7.1f} {r['ratio']:>8.3f} "
              f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['cut_raw']:>14.1f} {r['cut']:>7.1f} "
              f"{r['cut_ratio']:>8.3f} {r['cut_p99_ms']:>7.1f} {r['cut_rounds']:>5} {r['failed']:>6}")
    machine_cpu(rows)
    print("## Medians")
    print(f"{'db':<9} {'runs':>4} {'API/raw':>8} {'(≥0.95)':<8} {'during cutover':>14} {'(≥0.95)':<8} "
          f"{'failed verifies':>15}")
    for db in [d for d in ("sqlite", "postgres") if any(r["db"] == d for r in rows)]:
        rs = [r for r in rows if r["db"] == db]
        share = med([r["ratio"] for r in rs])
        cut = med([r["cut_ratio"] for r in rs])
        failed = sum(r["failed"] for r in rs)
        print(f"{db:<9} {len(rs):>4} {share:>8.3f} {verdict(share >= TARGET_VERIFY_SHARE):<8} "
              f"{cut:>14.3f} {verdict(cut >= TARGET_VERIFY_SHARE):<8} {failed:>6} "
              f"{verdict(failed == 0)}")
    print()
    print("raw = examples/argon2_rate.rs: one thread per core verifying the same PHC strings, nothing")
    print("else; API = credshift serve answering POST /v1/verify over keep-alive HTTP, the load")
    print("generator on the same cores. Raw and API windows alternate, and each ratio compares")
    print("adjacent windows. During the cutover both kinds of window share the cores with")
    print("`credshift apply` backfilling the same store and with the database server.")


def machine_cpu(rows):
    """Where the CPU went in the API windows (bench/lib.sh `measured`), and
    what one hash cost there against raw (`server_split`)."""
    rows = [r for r in rows if "cpu_hash" in r]
    if not rows:
        return
    print()
    print("## The machine's CPU over the API windows (shares of all cores)")
    print(f"{'db':<9} {'run':>3} {'hashing':>7} {'server':>7} {'load':>7} {'database':>8} "
          f"{'rest':>7} {'idle':>7} {'hash CPU':>8} {'ms/hash':>7} {'raw ms':>6}")
    for r in rows:
        print(f"{r['db']:<9} {r['run']:>3} {r['cpu_hash']:>7.3f} {r['cpu_server']:>7.3f} "
              f"{r['cpu_load']:>7.3f} {r['cpu_db']:>8.3f} {r['cpu_rest']:>7.3f} "
              f"{r['cpu_idle']:>7.3f} {r['hash_share']:>8.3f} {r['api_hash_ms']:>7.2f} "
              f"{r['raw_hash_ms']:>6.2f}")
    print()


def overload(path):
    rows = load(path)
    print("## Per run (per second; each figure the median of its window pairs)")
    print(f"{'db':<9} {'run':>3} {'raw':>7} {'offered':>8} {'ok':>7} {'ok/raw':>7} {'shed':>7} "
          f"{'shed total':>10} {'other':>5} {'errors':>6} {'p99 ms':>7} {'RSS MiB':>8} {'threads':>7} "
          f"{'hash CPU':>8} {'ms/hash':>7} {'raw ms':>6}")
    for r in rows:
        print(f"{r['db']:<9} {r['run']:>3} {r['raw']:>7.1f} {r['raw'] * r['factor']:>8.1f} "
              f"{r['ok']:>7.1f} {r['ratio']:>7.3f} {r['shed']:>7.1f} {r['shed_total']:>10} "
              f"{r['other']:>5} {r['errors']:>6} {r['p99_ms']:>7.1f} {r['rss_mib']:>8.1f} "
              f"{r['threads']:>7} {r['hash_share']:>8.3f} {r['api_hash_ms']:>7.2f} "
              f"{r['raw_hash_ms']:>6.2f}")
    machine_cpu(rows)
    print("## Medians")
    print(f"{'db':<9} {'runs':>4} {'goodput/raw':>11} {'(≥0.90)':<8} {'other+errors':>12}")
    for db in [d for d in ("sqlite", "postgres") if any(r["db"] == d for r in rows)]:
        rs = [r for r in rows if r["db"] == db]
        share = med([r["ratio"] for r in rs])
        bad = sum(r["other"] + r["errors"] for r in rs)
        print(f"{db:<9} {len(rs):>4} {share:>11.3f} {verdict(share >= TARGET_OVERLOAD_SHARE):<8} "
              f"{bad:>12} {verdict(bad == 0)}")
    print()
    print("raw = examples/argon2_rate.rs, one thread per core; offered = the open-loop client")
    print("(examples/open_loop.rs, keep-alive connections, on the same cores) at the")
    print("factor times the raw rate of the adjacent window; ok = answers 200 result ok within")
    print("the window (goodput); shed = 503 with Retry-After; other = any other answer.")
    print("hash CPU = the hashing threads' share of the server's CPU; ms/hash = their CPU per")
    print("hash run; raw ms = argon2_rate's CPU per verify over the run's raw windows.")
    print("machine CPU: hashing = the server's hashing threads, server = its other threads")
    print("(HTTP, JSON, SQLite), load = the open-loop client, database = the PostgreSQL server,")
    print("rest = the kernel and every other process, idle = unused; all as shares of the")
    print("machine's cores over the API windows.")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, path = sys.argv[1], sys.argv[2]
    {"batches": batches, "cutover": cutover, "import": imports, "verify": verifies,
     "overload": overload}[cmd](path)


if __name__ == "__main__":
    main()
