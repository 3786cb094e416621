from __future__ import annotations

import asyncio

import bpe_openai

from gophergate.gateway.estimator import Estimator, heuristic_tokens


async def test_helper_process_counts_with_o200k_and_stops_when_idle() -> None:
    estimator = Estimator(idle_seconds=0.3)
    messages = [{"role": "user", "content": "Hello there, how are you today?"}]
    prompt, completion = await estimator.estimate(messages, "I am fine, thank you!")
    encoding = bpe_openai.get_encoding("o200k_base")
    assert completion == len(encoding.encode_ordinary("I am fine, thank you!"))
    assert prompt == len(encoding.encode_ordinary(messages[0]["content"])) + 3 + 3
    assert estimator.running
    await asyncio.sleep(0.8)
    assert not estimator.running
    assert await estimator.estimate(messages, "") == (prompt, 0)  # restarted on demand
    await estimator.close()
    assert not estimator.running


async def test_broken_helper_falls_back_to_the_heuristic() -> None:
    estimator = Estimator(command=("false",))
    text = "x" * 40
    assert await estimator.estimate([{"role": "user", "content": text}], text) == (10, 10)
    assert heuristic_tokens("abcde") == 2
    await estimator.close()
