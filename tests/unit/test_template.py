"""Template parsing, coinbase layout and block assembly, checked byte by byte."""

from __future__ import annotations

import hashlib

import pytest

from multipool.chain.coinbase import TxOut, build_coinbase
from multipool.chain.template import make_work, parse_template
from multipool.errors import TemplateError
from tests.support.fake_daemon import FakeTemplateDaemon

PAYOUT = bytes.fromhex("0014d5e77b6d987fe0f6625dbb4aec7787347d07c773")


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@pytest.mark.parametrize(("height", "encoded"), [
    (1, "51"), (16, "60"), (17, "0111"), (127, "017f"), (128, "028000"), (432, "02b001"),
    (227836, "03fc7903"),
])
def test_coinbase_script_starts_with_bip34_height(height: int, encoded: str):
    parts = build_coinbase(height=height, outputs=[TxOut(5, PAYOUT)], extranonce_size=8,
                           pool_tag=b"/tag/", witness_commitment=None)
    tx = parts.non_witness(bytes(8))
    # version(4) + 1 input + prevout(36) + script length(1) -> script
    script_len = tx[41]
    script = tx[42:42 + script_len]
    assert script.hex().startswith(encoded)
    assert script.endswith(b"\x05/tag/")
    assert 2 <= script_len <= 100


def test_coinbase_with_witness_is_bip141_serialization():
    commitment = bytes.fromhex("6a24aa21a9ed") + bytes(range(32))
    parts = build_coinbase(height=500, outputs=[TxOut(12345, PAYOUT)], extranonce_size=8,
                           pool_tag=b"", witness_commitment=commitment)
    en = bytes(range(8))
    plain, full = parts.non_witness(en), parts.with_witness(en)
    assert full[4:6] == b"\x00\x01"
    assert full[:4] + full[6:-4 - 34] + full[-4:] == plain
    assert full[-4 - 34:-4] == b"\x01\x20" + bytes(32)
    # outputs: payout with its value, then the commitment with value 0
    assert (12345).to_bytes(8, "little") + bytes([len(PAYOUT)]) + PAYOUT in plain
    assert bytes(8) + bytes([len(commitment)]) + commitment in plain


def test_work_block_has_mweb_suffix_after_transactions():
    daemon = FakeTemplateDaemon(txs=2)
    raw = daemon.template()
    raw["mweb"] = "ab" * 10
    template = parse_template(raw)
    work = make_work(template, payout_script=PAYOUT, extranonce_size=8, pool_tag=b"/t/")
    en = bytes(8)
    header = work.header(en, template.curtime, 7, template.version)
    block = work.block(header, en)
    assert block.endswith(bytes.fromhex(daemon.txs[-1]["data"]) + b"\x01" + b"\xab" * 10)
    assert header[36:68] == daemon.expected_merkle_root(dsha(work.coinbase.non_witness(en)))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("height", "12", "'height' is str"),
    ("previousblockhash", "zz", "previousblockhash"),
    ("bits", "xyz", "'bits' is not hex"),
    ("transactions", [{"data": "00"}], "transactions[0].txid"),
    ("coinbasevalue", -1, "must not be negative"),
])
def test_bad_template_fields_are_named(field: str, value: object, message: str):
    raw = FakeTemplateDaemon().template()
    raw[field] = value
    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_template(raw)


def test_missing_field_is_named():
    raw = FakeTemplateDaemon().template()
    del raw["curtime"]
    with pytest.raises(TemplateError, match="no 'curtime'"):
        parse_template(raw)
