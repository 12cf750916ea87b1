"""Block candidates: one submission in flight per tip, the next only if it was refused."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from multipool.chain.template import make_work, parse_template
from multipool.stratum.blocks import BlockSubmissions, BlockSubmitterAPI
from multipool.stratum.jobs import Job
from multipool.stratum.sink import MemoryShareSink
from tests.support.fake_daemon import FakeTemplateDaemon


class SlowSubmitter(BlockSubmitterAPI):
    def __init__(self, results: list[str | None]):
        self.results = results
        self.submitted: list[str] = []

    async def submit_block(self, block: bytes, hash_hex: str) -> str | None:
        self.submitted.append(hash_hex)
        await asyncio.sleep(0.05)  # the daemon validating
        return self.results.pop(0)


def job_for(daemon: FakeTemplateDaemon) -> Job:
    work = make_work(parse_template(daemon.template()), payout_script=bytes(22),
                     extranonce_size=8, pool_tag=b"")
    return Job("1", work, 0.0, True, [])


def headers(job: Job, count: int) -> list[bytes]:
    t = job.template
    return [job.work.header(bytes(8), t.curtime, nonce, t.version) for nonce in range(count)]


async def run(results: list[str | None], count: int):
    submitter, sink, signals = SlowSubmitter(results), MemoryShareSink(), []
    blocks = BlockSubmissions(submitter=submitter, sink=sink,
                              on_submitted=lambda: signals.append(1),
                              logger=logging.getLogger("test"))
    job = job_for(FakeTemplateDaemon())
    for header in headers(job, count):
        blocks.found(job, header, bytes(8), "addr", "w")
    await blocks.wait()
    return submitter, sink, blocks, signals, job


async def test_storm_of_candidates_submits_only_until_one_is_accepted():
    submitter, sink, blocks, signals, job = await run([None], 50)
    assert len(submitter.submitted) == 1
    assert [b.accepted for b in sink.blocks] == [True]
    expected = hashlib.sha256(hashlib.sha256(headers(job, 1)[0]).digest()).digest()[::-1]
    assert sink.blocks[0].hash_hex == expected.hex()
    assert blocks.candidates == 50 and blocks.dropped == 49
    assert signals == [1]
    # a late candidate for the same, solved tip is not submitted either
    blocks.found(job, headers(job, 51)[-1], bytes(8), "addr", "w")
    await blocks.wait()
    assert len(submitter.submitted) == 1


async def test_refused_candidate_lets_the_next_one_go():
    submitter, sink, _, _, _ = await run(["bad-cb-amount", "high-hash", None], 5)
    assert len(submitter.submitted) == 3
    assert [b.accepted for b in sink.blocks] == [False, False, True]
    assert [b.result for b in sink.blocks] == ["bad-cb-amount", "high-hash", None]


async def test_candidate_is_stored_before_it_is_submitted():
    """The sink's durable write finishes before submitblock starts, and the verdict
    follows the submission."""
    events: list[str] = []

    class SlowSink(MemoryShareSink):
        async def record_candidate(self, candidate):
            events.append("store begins")
            await asyncio.sleep(0.05)  # an fsync, a commit
            events.append("stored")
            await super().record_candidate(candidate)

        def record_block(self, block):
            events.append("verdict")
            super().record_block(block)

    class Submitter(SlowSubmitter):
        async def submit_block(self, block: bytes, hash_hex: str) -> str | None:
            events.append("submit")
            return await super().submit_block(block, hash_hex)

    sink = SlowSink()
    blocks = BlockSubmissions(submitter=Submitter([None]), sink=sink,
                              on_submitted=lambda: None, logger=logging.getLogger("test"))
    job = job_for(FakeTemplateDaemon())
    blocks.found(job, headers(job, 1)[0], bytes(8), "addr", "w")
    await blocks.wait()
    assert events == ["store begins", "stored", "submit", "verdict"]
    assert sink.candidates[0].hash_hex == sink.blocks[0].hash_hex
    assert len(blocks.durable_seconds) == 1 and blocks.durable_seconds[0] >= 0.05


async def test_block_is_submitted_even_when_its_candidate_cannot_be_recorded(caplog):
    class BrokenSink(MemoryShareSink):
        async def record_candidate(self, candidate):
            raise RuntimeError("a bug in the sink")

    submitter, sink = SlowSubmitter([None]), BrokenSink()
    blocks = BlockSubmissions(submitter=submitter, sink=sink, on_submitted=lambda: None,
                              logger=logging.getLogger("test"))
    job = job_for(FakeTemplateDaemon())
    with caplog.at_level(logging.ERROR):
        blocks.found(job, headers(job, 1)[0], bytes(8), "addr", "w")
        await blocks.wait()
    assert len(submitter.submitted) == 1 and sink.blocks[0].accepted
    assert "could not be recorded" in caplog.text and "a bug in the sink" in caplog.text
