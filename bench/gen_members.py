#!/usr/bin/env python3
"""Writes a member CSV for `credshift accounts import` (stdlib only).

Header `login_id,base_email,login,mail`. Login IDs look like the ISP's:
two letters and seven digits (`wk0000123`, `ab1234567`), unique, and in an
order unrelated to the file order (the number part is a permutation of the
row number), so account ids and login-ID order do not coincide, as in a
legacy export. Every `login` and `mail` cell is a real argon2id PHC string
taken round-robin from the hashes file (`password<TAB>hash` lines), so the
rows are as long as real ones while generating them costs nothing.
"""

import argparse
import csv
import sys

PREFIXES = ["wk", "ab", "wk", "cd", "wk", "ab", "ef", "wk"]
# n -> (n * A + B) mod 10^7 is a bijection on [0, 10^7) since gcd(A, 10) = 1.
MOD = 10_000_000
A = 7_654_321
B = 1_234_567


def login_id(i: int) -> str:
    n = (i * A + B) % MOD
    return f"{PREFIXES[(i * 5 + n) % len(PREFIXES)]}{n:07d}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, required=True)
    ap.add_argument("--hashes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--order", choices=["scattered", "sorted"], default="scattered",
                    help="sorted: rows (and so account ids) in login-ID order")
    args = ap.parse_args()
    if args.accounts > MOD:
        print(f"at most {MOD} accounts", file=sys.stderr)
        return 2
    with open(args.hashes, encoding="utf-8") as f:
        hashes = [line.rstrip("\n").split("\t", 1)[1] for line in f if line.strip()]
    if len(hashes) < 2:
        print("need at least two hashes", file=sys.stderr)
        return 2
    h = len(hashes)
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["login_id", "base_email", "login", "mail"])
        if args.order == "sorted":
            ids = sorted(login_id(i) for i in range(args.accounts))
        else:
            ids = (login_id(i) for i in range(args.accounts))
        rows = []
        for i, lid in enumerate(ids):
            rows.append((lid, f"{lid}@wakwak.example.jp", hashes[i % h], hashes[(i + 1) % h]))
            if len(rows) == 10_000:
                w.writerows(rows)
                rows.clear()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
