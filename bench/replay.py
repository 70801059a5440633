#!/usr/bin/env python3
"""Writes, as one SQL script, the statements credshift's backfill runs
(src/store/cutovers.rs: `backfill_batch` / `copy_range`), one transaction
per batch of 1000 accounts, with the batch bounds precomputed from the
member file: no Rust, no driver, just the database doing the batches.

  replay.py --members CSV --order login|id [--batch 1000] [--dialect sqlite|postgres]

--order login: batches in login-ID order, as credshift walks them now.
--order id:    the same statements, bounded by account id instead (ids are
               1..N in file order after bench/cutover.sh's load), i.e. the
               batches walk the credentials primary key in order.

Used by bench/why.sh to tell what bounds the cutover: the SQL per batch, the
order the batches take, or credshift around them.
"""

import argparse
import csv
import sys

REALM = "wakwak"
VIA = "cutover:split-login-2018"
TARGETS = ("support", "connection")


def q(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", required=True)
    ap.add_argument("--order", choices=["login", "id"], required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--dialect", choices=["sqlite", "postgres"], required=True)
    args = ap.parse_args()
    with open(args.members, encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        logins = [row[0] for row in r]
    n = len(logins)
    out = sys.stdout
    lock = " FOR UPDATE" if args.dialect == "postgres" else ""
    begin = "BEGIN IMMEDIATE;" if args.dialect == "sqlite" else "BEGIN;"
    out.write("INSERT INTO cutover_checkpoints (cutover, realm, source, targets, at, phase, cursor, "
              "done, total, started_at, updated_at) VALUES ('replay', 'wakwak', 'login', "
              f"'support,connection', 0, 'running', NULL, 0, {n}, 0, 0);\n")
    if args.order == "login":
        ordered = sorted(logins)
        bounds = [ordered[min(i + args.batch, n) - 1] for i in range(0, n, args.batch)]
        lo = ""
        for hi in bounds:
            out.write(f"{begin}\n")
            out.write(f"SELECT phase, cursor FROM cutover_checkpoints WHERE cutover = 'replay'{lock};\n")
            out.write("SELECT MAX(login_id) FROM (SELECT a.login_id FROM accounts a "
                      "JOIN credentials s ON s.account_id = a.id AND s.name = 'login' "
                      f"WHERE a.realm = '{REALM}' AND a.login_id > {q(lo)} ORDER BY a.login_id "
                      f"LIMIT {args.batch}) AS batch;\n")
            out.write("SELECT COUNT(*) FROM accounts a JOIN credentials s ON s.account_id = a.id "
                      f"AND s.name = 'login' WHERE a.realm = '{REALM}' AND a.login_id > {q(lo)} "
                      f"AND a.login_id <= {q(hi)};\n")
            for t in TARGETS:
                out.write("INSERT INTO credentials (account_id, name, hash, set_at, set_via, "
                          f"must_change, version) SELECT s.account_id, '{t}', s.hash, s.set_at, "
                          f"'{VIA}', s.must_change, 1 FROM credentials s JOIN accounts a ON "
                          f"a.id = s.account_id WHERE a.realm = '{REALM}' AND s.name = 'login' "
                          f"AND a.login_id > {q(lo)} AND a.login_id <= {q(hi)} "
                          "ON CONFLICT (account_id, name) DO NOTHING;\n")
            out.write(f"UPDATE cutover_checkpoints SET cursor = {q(hi)}, done = done + {args.batch}, "
                      "updated_at = 1 WHERE cutover = 'replay';\n")
            out.write("COMMIT;\n")
            lo = hi
    else:
        for lo in range(0, n, args.batch):
            hi = min(lo + args.batch, n)
            out.write(f"{begin}\n")
            out.write(f"SELECT phase, cursor FROM cutover_checkpoints WHERE cutover = 'replay'{lock};\n")
            out.write("SELECT MAX(id) FROM (SELECT a.id FROM accounts a "
                      "JOIN credentials s ON s.account_id = a.id AND s.name = 'login' "
                      f"WHERE a.realm = '{REALM}' AND a.id > {lo} ORDER BY a.id "
                      f"LIMIT {args.batch}) AS batch;\n")
            out.write("SELECT COUNT(*) FROM accounts a JOIN credentials s ON s.account_id = a.id "
                      f"AND s.name = 'login' WHERE a.realm = '{REALM}' AND a.id > {lo} "
                      f"AND a.id <= {hi};\n")
            for t in TARGETS:
                out.write("INSERT INTO credentials (account_id, name, hash, set_at, set_via, "
                          f"must_change, version) SELECT s.account_id, '{t}', s.hash, s.set_at, "
                          f"'{VIA}', s.must_change, 1 FROM credentials s JOIN accounts a ON "
                          f"a.id = s.account_id WHERE a.realm = '{REALM}' AND s.name = 'login' "
                          f"AND s.account_id > {lo} AND s.account_id <= {hi} "
                          "ON CONFLICT (account_id, name) DO NOTHING;\n")
            out.write(f"UPDATE cutover_checkpoints SET cursor = '{hi}', done = done + {args.batch}, "
                      "updated_at = 1 WHERE cutover = 'replay';\n")
            out.write("COMMIT;\n")


if __name__ == "__main__":
    main()
