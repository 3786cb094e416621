"""Token estimates computed in a helper process that runs only while estimates are being asked for.

The tokenizer (``bpe-openai``, o200k) costs ~140 MB of memory and milliseconds of CPU per long prompt.
Estimates are rare (only when an upstream reports no usage), so the gateway process does not carry it: the
first estimate starts ``python -m gophergate.gateway.estimator``, which answers one JSON line per request on
stdin/stdout and is closed again after ``idle_seconds`` without work. If the helper cannot run, a
characters/4 heuristic answers instead (still marked as an estimate).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import orjson

log = logging.getLogger(__name__)


def heuristic_tokens(text: str) -> int:
    return (len(text) + 3) // 4


class Estimator:
    def __init__(self, *, idle_seconds: float = 60.0, command: tuple[str, ...] | None = None) -> None:
        self._idle_seconds = idle_seconds
        self._command = command or (sys.executable, "-m", "gophergate.gateway.estimator")
        self._stopping: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def estimate(self, messages: Any, produced: str) -> tuple[int, int]:
        """(prompt tokens, completion tokens) for a request's messages and the text it produced."""
        async with self._lock:
            try:
                return await self._ask(messages, produced)
            except Exception as exc:
                log.warning("token estimator unavailable (%s); using a character heuristic", exc)
                await self._stop()
                from gophergate.gateway.estimate import message_texts

                return heuristic_tokens("".join(message_texts(messages))), heuristic_tokens(produced)

    async def _ask(self, messages: Any, produced: str) -> tuple[int, int]:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self.running:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(orjson.dumps({"messages": messages, "produced": produced}) + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if not line:
            raise RuntimeError("the estimator process exited")
        answer = orjson.loads(line)
        self._idle_timer = asyncio.get_running_loop().call_later(self._idle_seconds, self._on_idle)
        return int(answer["prompt"]), int(answer["completion"])

    def _on_idle(self) -> None:
        self._idle_timer = None
        self._stopping = asyncio.get_running_loop().create_task(self._stop_when_idle())

    async def _stop_when_idle(self) -> None:
        if not self._lock.locked():
            await self._stop()

    async def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._stopping is not None:
            await self._stopping
        await self._stop()


def _serve() -> None:
    from gophergate.gateway.estimate import count_messages, count_text

    for line in sys.stdin.buffer:
        request = orjson.loads(line)
        answer = {"prompt": count_messages(request["messages"]), "completion": count_text(request["produced"])}
        sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    _serve()
