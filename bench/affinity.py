"""The cache-affinity scenario: the prompt-cache hit ratio of multi-turn conversations through a model group of
four deployments, with and without affinity (docs/routing.md, "Cache affinity").

Each deployment is a small fake OpenAI-compatible server that models a provider's prompt cache per deployment: a
request's prompt is cached in prefix blocks, and the longest run of leading blocks this deployment has seen before
is reported as ``usage.prompt_tokens_details.cached_tokens`` (what OpenAI, DeepSeek and others report). The
gateway fronts the four as one group three times over: ``affinity = "none"``, ``"session"`` (the request's
``user``) and ``"prefix"``. The client plays the same conversations (a long system prompt, then turns that grow the
history) against each group and reads the ratio from the answers' usage: cached prompt tokens over prompt tokens.

Run on its own: ``.venv/bin/python -m bench.affinity`` (about 20 s). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bench.procs import create_client_key, gateway_env, gophergate_executable

DEPLOYMENTS = 4
BLOCK_CHARS = 512  # a cache block: about 128 tokens at 4 characters a token
CACHE_BLOCKS = 4096  # blocks a deployment keeps (LRU)
GROUPS = {"none": "affinity-none", "session": "affinity-session", "prefix": "affinity-prefix"}


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


class Deployment:
    """One fake deployment with its own prefix cache, on a thread of its own."""

    def __init__(self) -> None:
        self.blocks: OrderedDict[bytes, None] = OrderedDict()
        self.port = _free_port()
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    def _cached_chars(self, prompt: str) -> int:
        """Leading blocks seen before count as cached; every block of this prompt is remembered now."""
        digest = hashlib.blake2b(digest_size=16)
        cached = 0
        hit = True
        for start in range(0, len(prompt) - BLOCK_CHARS + 1, BLOCK_CHARS):
            digest.update(prompt[start : start + BLOCK_CHARS].encode())
            key = digest.copy().digest()
            if hit and key in self.blocks:
                cached += BLOCK_CHARS
                self.blocks.move_to_end(key)
            else:
                hit = False
                self.blocks[key] = None
                if len(self.blocks) > CACHE_BLOCKS:
                    self.blocks.popitem(last=False)
        return cached

    async def _chat(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests += 1
        prompt = "".join(f"{m['role']}:{m['content']}\n" for m in body["messages"])
        prompt_tokens = _tokens(len(prompt))
        cached = min(_tokens(self._cached_chars(prompt)), prompt_tokens)
        answer = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "noted"}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 1,
                "total_tokens": prompt_tokens + 1,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }
        return web.json_response(answer)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(deployments: list[Deployment]) -> str:
    lines = []
    for n, deployment in enumerate(deployments, start=1):
        lines += [
            f"[providers.dep{n}]",
            f'base_url = "http://127.0.0.1:{deployment.port}/v1"',
            'api_key = "sk-bench"',
            'models = ["bench-model"]',
            "",
        ]
    targets = ", ".join(f'{{ model = "dep{n}/bench-model" }}' for n in range(1, len(deployments) + 1))
    for affinity, name in GROUPS.items():
        lines += [
            f"[model_groups.{name}]",
            'strategy = "weighted"',
            f'affinity = "{affinity}"',
            f"targets = [{targets}]",
            "",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def gateway(deployments: list[Deployment]) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="gophergate-affinity-") as tmp:
        root = Path(tmp)
        (root / "gophergate.toml").write_text(config(deployments))
        port = _free_port()
        env = gateway_env(deployments[0].port, root / "data", {"GOPHERGATE_CONFIG": str(root / "gophergate.toml")})
        env["GOPHERGATE_PORT"] = str(port)
        key = create_client_key(env, root)
        log = (root / "gateway.log").open("wb")
        proc = subprocess.Popen([gophergate_executable(), "serve"], env=env, cwd=root, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url + "/readyz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError((root / "gateway.log").read_text()) from None
                    time.sleep(0.1)
            yield url, key
        finally:
            proc.terminate()
            proc.wait(30)


@dataclass
class Outcome:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0

    @property
    def ratio(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _filler(seed: int, chars: int) -> str:
    words = []
    state = seed
    while sum(len(w) + 1 for w in words) < chars:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        words.append(f"w{state % 100_000}")
    return " ".join(words)


def play(url: str, key: str, group: str, conversations: int, turns: int) -> Outcome:
    """Every conversation's turns in order (conversations interleaved, as concurrent users would be)."""
    outcome = Outcome()
    histories: list[list[dict[str, str]]] = [
        [{"role": "system", "content": _filler(c, 6000)}, {"role": "user", "content": _filler(10_000 + c, 800)}]
        for c in range(conversations)
    ]
    for turn in range(turns):
        for c, history in enumerate(histories):
            body = {"model": group, "messages": history, "user": f"user-{c}"}
            request = urllib.request.Request(
                url + "/v1/chat/completions",
                data=orjson.dumps(body),
                headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                usage = json.load(response)["usage"]
            outcome.requests += 1
            outcome.prompt_tokens += usage["prompt_tokens"]
            outcome.cached_tokens += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            history += [
                {"role": "assistant", "content": "noted"},
                {"role": "user", "content": _filler(20_000 + 100 * c + turn, 400)},
            ]
    return outcome


def run(conversations: int = 40, turns: int = 8) -> dict[str, Any]:
    deployments = [Deployment() for _ in range(DEPLOYMENTS)]
    for deployment in deployments:
        deployment.start()
    try:
        with gateway(deployments) as (url, key):
            results = {}
            for affinity, group in GROUPS.items():
                for deployment in deployments:
                    deployment.blocks.clear()  # every group starts with cold caches
                results[affinity] = play(url, key, group, conversations, turns)
    finally:
        for deployment in deployments:
            deployment.stop()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "deployments": DEPLOYMENTS,
        "conversations": conversations,
        "turns": turns,
        "groups": {
            affinity: {
                "requests": o.requests,
                "prompt_tokens": o.prompt_tokens,
                "cached_tokens": o.cached_tokens,
                "cache_hit_ratio": round(o.ratio, 4),
            }
            for affinity, o in results.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.affinity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args(argv)
    report = run(args.conversations, args.turns)
    print(
        f"cache affinity, {report['deployments']} deployments, {args.conversations} conversations x {args.turns} turns"
    )
    for affinity, figures in report["groups"].items():
        print(
            f"  affinity={affinity:<8} prompt-cache hit ratio {figures['cache_hit_ratio']:.1%} "
            f"({figures['cached_tokens']:,} of {figures['prompt_tokens']:,} prompt tokens cached)"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"affinity-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
