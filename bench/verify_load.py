"""Closed-loop load for bench/verify.sh: CONCURRENCY keep-alive HTTP/1.1
connections, each posting /v1/verify for random members with their right
password for SECONDS, then prints one JSON line: verifies answered ok,
other answers (any non-200 or a 200 that is not {"result":"ok"}), transport
errors, the window actually measured, and latency percentiles.

    python3 verify_load.py --port P --token-file F --members F.tsv \
        --purpose support-portal --concurrency 8 --seconds 10

Pure standard library; a verify costs the server some 20 ms of one core,
so this client's own CPU (well under 1 %) does not bound the figure.
"""
import argparse
import asyncio
import json
import random
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--members", required=True, help="login_id<TAB>password lines")
    p.add_argument("--realm", default="wakwak")
    p.add_argument("--purpose", default="support-portal")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    return p.parse_args()


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def worker(args, token, members, state, rng):
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    try:
        while not state["stop"]:
            login_id, password = members[rng.randrange(len(members))]
            body = json.dumps({
                "realm": args.realm, "login_id": login_id,
                "purpose": args.purpose, "password": password,
            }).encode()
            request = (
                f"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.monotonic()
            try:
                writer.write(request)
                await writer.drain()
                status, answer = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
                state["errors"] += 1
                state["first_error"] = state["first_error"] or repr(e)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
                continue
            t1 = time.monotonic()
            if not state["measuring"]:
                continue
            ok = status == 200 and json.loads(answer or b"{}").get("result") == "ok"
            if ok:
                state["ok"] += 1
                state["latencies"].append(t1 - t0)
            else:
                state["other"] += 1
                state["first_other"] = state["first_other"] or f"{status} {answer[:200]!r}"
                if status >= 500:
                    state["5xx"] += 1
    finally:
        writer.close()


async def main():
    args = parse_args()
    token = open(args.token_file).read().strip()
    members = [tuple(l.rstrip("\n").split("\t", 1)) for l in open(args.members) if l.strip()]
    state = {"stop": False, "measuring": False, "ok": 0, "other": 0, "5xx": 0,
             "errors": 0, "first_error": None, "first_other": None, "latencies": []}
    tasks = [asyncio.create_task(worker(args, token, members, state, random.Random(i)))
             for i in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    state["measuring"] = False
    window = time.monotonic() - started
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(state["latencies"])
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None
    print(json.dumps({
        "ok": state["ok"], "other": state["other"], "status_5xx": state["5xx"],
        "errors": state["errors"], "window_s": round(window, 3),
        "rate": round(state["ok"] / window, 2), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        "first_error": state["first_error"], "first_other": state["first_other"],
    }))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
