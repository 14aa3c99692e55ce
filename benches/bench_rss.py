"""Resident memory of one server process with the local embedder and the verifier.

Prints the process's RSS (and its peak, ``VmHWM``) after each step: the server's imports;
the model packages; the local embedder and the packaged verifier loaded and used on short
texts; then batches of lookup texts that fill the embedder's 256 word pieces, and pairs
that fill the verifier's 128, from the smallest batch up; then one short text again: what
the process keeps after the burst. Linux only (reads /proc/self/status).

    python benches/bench_rss.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

SHORT = "what is the capital of France?"
# About 300 words: past the embedder's 256 word pieces and the verifier's 128.
LONG = " ".join(["how do I configure the connection pool for several workers"] * 30)


def rss() -> str:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0]) / 1024 if name.startswith("Vm") else 0
    return f"RSS {fields['VmRSS']:.0f} MiB (peak {fields['VmHWM']:.0f} MiB)"


async def run() -> None:
    import fastapi  # noqa: F401
    import psycopg_pool  # noqa: F401
    import uvicorn  # noqa: F401

    from semanticcache import CacheSettings

    print(f"fastapi, uvicorn, psycopg, semanticcache imported: {rss()}")
    from semanticcache._embedders.local import LocalEmbedder
    from semanticcache._verifier import load_verifier

    print(f"+ onnxruntime, tokenizers, numpy imported: {rss()}")
    embedder = LocalEmbedder()
    verifier = load_verifier(CacheSettings(verifier="on"), embedder)
    assert verifier is not None
    await embedder.embed([SHORT])
    await verifier.probabilities([(SHORT, "France's capital?")], [0.9])
    print(f"embedder and verifier loaded, one short text and pair: {rss()}")
    await verifier.probabilities([(LONG, LONG + " please")] * 16, [0.9] * 16)
    print(f"+ 16 pairs of 128 word pieces scored at once: {rss()}")
    for n in (1, 8, 32, 64):
        await embedder.embed([f"{LONG} {i}" for i in range(n)])
        print(f"+ {n} texts of 256 word pieces embedded at once: {rss()}")
    await embedder.embed([SHORT])
    print(f"+ one short text again: {rss()}")
    await embedder.aclose()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
