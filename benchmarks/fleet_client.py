"""Client-side throughput of the OpenAI-compatible path against a stand-in fleet (is redtrans the bottleneck?).

A stand-in OpenAI-compatible upstream runs in its own asyncio process on several loopback ports (several
endpoints), answers every completion after a fixed latency (50 ms) with a plausible translation (English for
"to English" prompts, Chinese for "to Chinese", markers kept), and counts the calls it receives. 20,000
distinct short SNS segments (one line each, some with emoji inside the line) go through:

  (a) bare:      an asyncio + httpx loop posting the same requests (redtrans's own prompts) with the same
                 concurrency, writing one JSON line per answer (the gate's baseline, as the issue sets it);
  (a') bare-aiohttp: the same loop on aiohttp, the client the openai engine uses when installed: the ceiling
                 of a Python client here (reported, not gated);
  (b) translate: `redtrans translate -i … -o … --model http://…/v1,… --parallel C` (the openai engine);
  (c) sample:    `redtrans sample` round trips (m1 and m2 both on the fleet; 4 calls a row, so a quarter of
                 the rows gives the same number of calls). Reported, not gated.

httpx costs about 2 ms of CPU per request here and aiohttp about 0.5 ms (httpcore also walks its whole pool per
request, so the httpx loop keeps ≤ 16 connections per client); on 2 shared cores CPU per segment decides
segments/s. Each runs as its own process: wall time, segments/s, CPU seconds per 1,000 segments (user + system, from
wait4), peak RSS, and the upstream's own CPU over the phase. The upstream's call count must equal the segments
sent (no retries, nothing deduplicated away). Gate: (b) segments/s ÷ (a) segments/s ≥ 0.8, on the last line
`fleet_client_vs_bare: X target: 0.8`; the aim (not a gate) is ≥ 2,000 segments/s.

    python benchmarks/fleet_client.py [--segments 20000] [--endpoints 4] [--concurrency 128] [--latency 0.05]
        [--skip-sample] [--profile out.prof]   # --profile: cProfile of (b)'s process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.8
AIM = 2000.0

# -- segments ---------------------------------------------------------------------------------------------

_SUBJECTS = ["这家店", "今天的奶茶", "姐妹们", "我家猫", "周末的火锅", "新买的口红", "楼下的咖啡", "这部剧",
             "公司食堂", "地铁上的小哥", "老板", "这个博主", "夏天的西瓜", "早八的课", "宿舍的空调"]  # fmt: skip
_VERBS = ["真的绝了", "太好吃了", "让我笑死", "有点离谱", "yyds", "冲就完事", "血压拉满", "狠狠爱住",
          "绝绝子", "破防了", "上头了", "有被惊艳到", "踩雷了", "种草了", "拿捏了"]  # fmt: skip
_TAILS = ["", "！", "～", "，谁懂啊", "，下次还来", "，救命", "，家人们", "，不愧是你"]
_EMOJI = ["", "", "", "😂", "🔥", "🧋", "😭", "✨"]


def segments(count: int, seed: int = 0) -> list[str]:
    """`count` distinct one-line Chinese SNS segments; an emoji sits inside some (a marker in the request)."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        emoji = rng.choice(_EMOJI)
        text = f"{rng.choice(_SUBJECTS)}第{i + 1}次{emoji}{rng.choice(_VERBS)}{rng.choice(_TAILS)}"
        out.append(text)
    assert len(set(out)) == count
    return out


# -- the stand-in fleet (its own process) -------------------------------------------------------------------

_EN_WORDS = ["this", "place", "is", "really", "great", "honestly", "so", "good", "wow", "again", "today", "love"]
_ZH_CHARS = "这个真的很好吃我们下次还来今天太开心了"
_MARKER = "⟨"


def _answer(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system = messages[0]["content"] if messages else ""
    source = messages[-1]["content"] if messages else str(body.get("prompt", ""))
    markers = []
    start = source.find(_MARKER)
    while start != -1:
        end = source.find("⟩", start)
        markers.append(source[start : end + 1])
        start = source.find(_MARKER, end)
    seed = sum(map(ord, source))
    if "to Chinese" in system:
        words = max(2, len(source.split()))
        text = "".join(_ZH_CHARS[(seed + k) % len(_ZH_CHARS)] for k in range(int(words * 1.6)))
    else:
        han = sum(1 for ch in source if "\u4e00" <= ch <= "\u9fff")
        latin = sum(1 for word in source.split() for _ in [word] if word.isascii()) + source.count("yyds")
        text = " ".join(_EN_WORDS[(seed + k) % len(_EN_WORDS)] for k in range(max(3, (han + 1) // 2 + latin + 1)))
    return text + "".join(" " + m for m in markers)


def upstream_main(endpoints: int, latency: float) -> None:
    """Serve OpenAI chat/text completions on `endpoints` loopback ports; print the ports; GET /stats gives
    {"calls", "cpu_s"}. Minimal HTTP/1.1 with keep-alive, so the stand-in costs little of the shared CPU."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    calls = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, path, _ = line.split(b" ", 2)
                length = 0
                for header in rest.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if path == b"/stats":
                    payload: dict[str, Any] = {"calls": calls, "cpu_s": time.process_time()}
                else:
                    calls += 1
                    request = json.loads(body)
                    await asyncio.sleep(latency)
                    text = _answer(request)
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                    if "messages" in request:
                        choice["message"] = {"role": "assistant", "content": text}
                    else:
                        choice["text"] = text
                    usage = {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48}
                    payload = {"id": f"c{calls}", "object": "chat.completion", "choices": [choice], "usage": usage}
                data = json.dumps(payload, ensure_ascii=False).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(data), data)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        servers = [await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024) for _ in range(endpoints)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        print(json.dumps(ports), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- (a) the bare loop (its own process) --------------------------------------------------------------------


def bare_main(input_path: str, output_path: str, urls: list[str], concurrency: int, client: str = "httpx") -> None:
    """asyncio + httpx, `concurrency` workers over `urls`, the requests redtrans would send, each answer parsed
    and written as a JSON line. Done the way httpx is fast: a worker keeps to one small client (≤ 16
    connections; httpcore walks its whole pool on every request), one TLS context for all clients."""
    import httpx

    from redtrans import prompts

    with Path(input_path).open(encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    if client == "aiohttp":
        asyncio.run(_bare_aiohttp(texts, output_path, urls, concurrency))
        return

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(texts)):
            queue.put_nowait(i)
        shards = max(1, -(-concurrency // 16))
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        clients = [
            (url, httpx.AsyncClient(limits=limits, timeout=60, verify=False)) for url in urls for _ in range(shards)
        ]
        with Path(output_path).open("w", encoding="utf-8") as out:

            async def worker(index: int) -> None:
                url, client = clients[index % len(clients)]
                while not queue.empty():
                    i = queue.get_nowait()
                    text = texts[i]
                    body = {
                        "model": "default",
                        "max_tokens": min(512, 32 + 2 * len(text)),
                        "temperature": 0.0,
                        "messages": prompts.translation_messages(text, "zh", "en"),
                    }
                    response = await client.post(url + "/chat/completions", json=body)
                    answer = response.json()["choices"][0]["message"]["content"]
                    out.write(json.dumps({"id": str(i), "translation": answer}, ensure_ascii=False) + "\n")

            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        for _, client in clients:
            await client.aclose()

    asyncio.run(main())


async def _bare_aiohttp(texts: list[str], output_path: str, urls: list[str], concurrency: int) -> None:
    import aiohttp

    from redtrans import prompts

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(texts)):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    with Path(output_path).open("w", encoding="utf-8") as out:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(index: int) -> None:
                url = urls[index % len(urls)] + "/chat/completions"
                while not queue.empty():
                    i = queue.get_nowait()
                    text = texts[i]
                    body = {
                        "model": "default",
                        "max_tokens": min(512, 32 + 2 * len(text)),
                        "temperature": 0.0,
                        "messages": prompts.translation_messages(text, "zh", "en"),
                    }
                    async with session.post(url, json=body) as response:
                        answer = json.loads(await response.read())["choices"][0]["message"]["content"]
                    out.write(json.dumps({"id": str(i), "translation": answer}, ensure_ascii=False) + "\n")

            await asyncio.gather(*(worker(w) for w in range(concurrency)))


# -- the driver ------------------------------------------------------------------------------------------------


def _stats(port: int) -> dict[str, float]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json())


def _run(name: str, cmd: list[str], port: int, count: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one phase as a child process; measure it with wait4 and the upstream's counters."""
    before = _stats(port)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = proc.stdout.read() if proc.stdout else b"", proc.stderr.read() if proc.stderr else b""
    proc.returncode = os.waitstatus_to_exitcode(status)
    after = _stats(port)
    calls = int(after["calls"] - before["calls"])
    cpu = usage.ru_utime + usage.ru_stime
    row = {
        "phase": name,
        "segments": count,
        "upstream_calls": calls,
        "wall_s": round(wall, 3),
        "segments_per_s": round(count / wall, 1),
        "cpu_s_per_1k": round(1000 * cpu / count, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "upstream_cpu_s_per_1k": round(1000 * (after["cpu_s"] - before["cpu_s"]) / count, 3),
        "exit": proc.returncode,
    }
    print(
        f"{name:>12}: {row['segments_per_s']:8.1f} segments/s  {row['cpu_s_per_1k']:6.3f} CPU s/1k  "
        f"peak RSS {row['peak_rss_mib']:6.1f} MiB  upstream calls {calls} (CPU {row['upstream_cpu_s_per_1k']:.3f} s/1k)"
        f"  wall {wall:.1f} s",
        flush=True,
    )
    if proc.returncode != 0:
        print(stderr.decode(errors="replace")[-3000:], file=sys.stderr)
    row["stderr_tail"] = stderr.decode(errors="replace")[-500:]
    del stdout
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=20000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=128, help="Requests in flight, over all endpoints.")
    parser.add_argument("--latency", type=float, default=0.05, help="Upstream answer latency, seconds.")
    parser.add_argument("--skip-sample", action="store_true", help="Leave out (c), the sample round trips.")
    parser.add_argument("--profile", help="Write a cProfile of (b)'s process here.")
    parser.add_argument("--out", help="Write the numbers as JSON here.")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, metavar=("INPUT", "OUTPUT", "URLS"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-client", default="httpx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream_main(args.endpoints, args.latency)
        return
    if args.bare:
        bare_main(args.bare[0], args.bare[1], args.bare[2].split(","), args.concurrency, args.bare_client)
        return

    work = Path(tempfile.mkdtemp(prefix="fleet-client-"))
    texts = segments(args.segments)
    corpus = work / "segments.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--upstream", "--endpoints", str(args.endpoints), "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    ports = json.loads(upstream.stdout.readline())
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    print(
        f"stand-in fleet: {len(ports)} endpoints, {args.latency * 1000:.0f} ms latency; {args.segments} segments; "
        f"concurrency {args.concurrency} (ceiling {args.concurrency / args.latency:.0f} segments/s)",
        flush=True,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        bare = _run(
            "bare",
            [
                sys.executable,
                __file__,
                "--bare",
                str(corpus),
                str(work / "bare.jsonl"),
                ",".join(urls),
                "--concurrency",
                str(args.concurrency),
            ],  # fmt: skip
            ports[0],
            args.segments,
            env,
        )
        rows.append(bare)
        try:
            import aiohttp  # noqa: F401

            bare_aiohttp = _run(
                "bare-aiohttp",
                [
                    sys.executable,
                    __file__,
                    "--bare",
                    str(corpus),
                    str(work / "bare-aiohttp.jsonl"),
                    ",".join(urls),
                    "--concurrency",
                    str(args.concurrency),
                    "--bare-client",
                    "aiohttp",
                ],  # fmt: skip
                ports[0],
                args.segments,
                env,
            )
            rows.append(bare_aiohttp)
        except ImportError:
            print("bare-aiohttp: skipped (aiohttp is not installed)")
        redtrans = [sys.executable, "-m", "redtrans"]
        if args.profile:
            redtrans = [sys.executable, "-m", "cProfile", "-o", str(Path(args.profile).resolve()), "-m", "redtrans"]
        translate = _run(
            "translate",
            [
                *redtrans,
                "translate",
                "-i",
                str(corpus),
                "-o",
                str(work / "translate.jsonl"),
                "--src",
                "zh",
                "--tgt",
                "en",
                "--model",
                ",".join(urls),
                "--parallel",
                str(args.concurrency),
            ],  # fmt: skip
            ports[0],
            args.segments,
            env,
        )
        rows.append(translate)
        written = sum(1 for _ in (work / "translate.jsonl").open(encoding="utf-8"))
        if written != args.segments:
            failures.append(f"translate wrote {written} rows of {args.segments}")
        for row in (bare, translate):
            if row["upstream_calls"] != args.segments:
                failures.append(f"{row['phase']}: {row['upstream_calls']} upstream calls for {args.segments} segments")
            if row["exit"] != 0:
                failures.append(f"{row['phase']} exited {row['exit']}")
        if not args.skip_sample:
            rows_c = args.segments // 4
            sample_corpus = work / "sample.jsonl"
            sample_corpus.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(True)[:rows_c]))
            fleet = ",".join(urls)
            per_model = str(max(1, args.concurrency // 2))
            sample = _run(
                "sample",
                [
                    *[sys.executable, "-m", "redtrans"],
                    "sample",
                    "-i",
                    str(sample_corpus),
                    "--src",
                    "zh",
                    "--tgt",
                    "en",
                    "-o",
                    str(work / "sample"),
                    "--m1",
                    fleet,
                    "--m2",
                    fleet,
                    "--set",
                    f"m1.parallel={per_model}",
                    "--set",
                    f"m2.parallel={per_model}",
                ],  # fmt: skip
                ports[0],
                rows_c * 4,
                env,
            )
            rows.append(sample)
            if sample["exit"] != 0:
                failures.append(f"sample exited {sample['exit']} (reported, not gated)")
    finally:
        upstream.terminate()
        upstream.wait(10)
    ratio = translate["segments_per_s"] / bare["segments_per_s"]
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "ratio": ratio, "failures": failures}, indent=2))
    for failure in failures:
        print(f"MISS: {failure}", flush=True)
    print(f"translate: {translate['segments_per_s']:.0f} segments/s (aim, not a gate: ≥ {AIM:.0f})")
    print(f"fleet_client_vs_bare: {ratio:.3f} target: {TARGET}")
    gated = [f for f in failures if "not gated" not in f]
    sys.exit(0 if ratio >= TARGET and not gated else 1)


if __name__ == "__main__":
    main()
