"""Hostile input: thousands of malformed, oversized and random messages from several
connections while a well-behaved miner keeps mining. The server must answer the miner
throughout, raise nothing in its callbacks, and keep no state for the attackers once
they are gone."""

from __future__ import annotations

import asyncio
import json
import random
import string

from tests.support.stratum_client import RawClient
from tests.unit.test_stratum_server import GOOD, ready_client, solve, start_pool, submit

METHODS = ["mining.subscribe", "mining.authorize", "mining.submit", "mining.configure",
           "mining.suggest_difficulty", "mining.extranonce.subscribe", "mining.notify",
           "x", "", "mining.submit\x00", "__init__", "HANDLERS"]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randint(-2**70, 2**70)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-10, 300)
    if kind == 2:
        return "".join(rng.choices(string.printable + "\u00e9\u2603", k=rng.randint(0, 80)))
    if kind == 3:
        return rng.choice([None, True, False, float("nan") if rng.random() < 0.1 else 0])
    if kind == 4:
        return "".join(rng.choices("0123456789abcdef", k=rng.choice([0, 7, 8, 9, 16])))
    if kind == 5:
        return rng.choice([-1, 0, 1e308, -0.0, 2**64])
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    if kind == 7:
        return {str(random_value(rng, depth + 1))[:10]: random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}
    return [GOOD + ".w", "1", "00000000", "00000000", "00000000"][: rng.randint(0, 6)]


def random_line(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))).replace(
            b"\n", b"") + b"\n"
    if kind == 1:
        return b"[" * rng.randint(1, 5000) + b"\n"  # deep nesting
    if kind == 2:
        return json.dumps(random_value(rng)).encode() + b"\n"
    message = {"id": random_value(rng) if rng.random() < 0.3 else rng.randint(0, 10**6),
               "method": rng.choice(METHODS) if rng.random() < 0.9 else random_value(rng),
               "params": [random_value(rng) for _ in range(rng.randint(0, 7))]
               if rng.random() < 0.9 else random_value(rng)}
    return json.dumps(message).encode() + b"\n"


async def attacker(port: int, seed: int, lines: int) -> tuple[int, int]:
    """Send ``lines`` random lines, reconnecting whenever the server cuts us off (which
    it should, for oversized lines and for too much garbage). Return (sent, cut off)."""
    rng = random.Random(seed)
    sent = cut = 0
    client = await RawClient.connect(port)
    while sent < lines:
        try:
            if rng.random() < 0.002:
                await client.send_line(b"A" * 20_000 + b"\n")  # oversized
            else:
                await client.send_line(random_line(rng))
            sent += 1
            if sent % 25 == 0:
                # Read replies now and then: a client that never reads is cut off too.
                data = await asyncio.wait_for(client.reader.read(1 << 20), 1)
                if not data:
                    raise ConnectionResetError
        except (ConnectionError, TimeoutError):
            cut += 1
            await client.close()
            client = await RawClient.connect(port)
    await client.close()
    return sent, cut


async def test_fuzz_while_honest_miner_keeps_mining():
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    started, task = await start_pool(bits="1d00ffff", ban_seconds=0)
    try:
        port = started.port
        miner, (_, en1, _), difficulty, notify = await ready_client(port)
        attack = [asyncio.create_task(attacker(port, seed, 600)) for seed in range(8)]
        accepted = 0
        for i in range(40):
            ntime, nonce = solve(notify, en1, f"{i:08x}", difficulty)
            reply = await submit(miner, notify, f"{i:08x}", ntime, nonce)
            accepted += reply["result"] is True
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*attack)
        assert sum(sent for sent, _ in results) == 8 * 600
        assert sum(cut for _, cut in results) > 0  # the server did cut some off
        assert accepted == 40
        assert (await miner.call("mining.ping", []))["result"] == "pong"
        await miner.close()
        await asyncio.sleep(0.2)
        assert started.server.sessions == {}
        assert started.server.guard.stats == {}
        assert errors == []
    finally:
        task.cancel()
        await started.server.close()
        loop.set_exception_handler(None)
