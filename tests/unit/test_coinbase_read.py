"""read_coinbase on published genesis blocks (their coinbase as Bitcoin Core and Litecoin
Core print it: the "The Times" / "NY Times" scriptSig and one 50-coin output), on a pool
coinbase built by build_coinbase with a witness, and on damaged blocks."""

from __future__ import annotations

import pytest

from multipool.chain.coinbase import TxOut, build_coinbase, read_coinbase
from multipool.errors import SerializationError
from tests.unit.test_chain_vectors import BTC_GENESIS_BLOCK_HEX, LTC_GENESIS_BLOCK_HEX

BTC_SCRIPT_SIG = ("04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c"
                  "6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062"
                  "616e6b73")
BTC_OUTPUT = ("4104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4c"
              "ef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac")


def test_bitcoin_genesis_coinbase():
    view = read_coinbase(bytes.fromhex(BTC_GENESIS_BLOCK_HEX))
    assert view.script_sig.hex() == BTC_SCRIPT_SIG
    assert view.outputs == (TxOut(5_000_000_000, bytes.fromhex(BTC_OUTPUT)),)
    assert view.carries(b"The Times 03/Jan/2009 Chancellor on brink of second bailout for banks")
    assert not view.carries(b"/multipool/") and not view.carries(b"")
    assert view.paid_to(bytes.fromhex(BTC_OUTPUT)) == 5_000_000_000
    assert view.paid_to(bytes(22)) == 0


def test_litecoin_genesis_coinbase():
    view = read_coinbase(bytes.fromhex(LTC_GENESIS_BLOCK_HEX))
    assert b"NY Times 05/Oct/2011 Steve Jobs" in view.script_sig
    assert [out.value for out in view.outputs] == [5_000_000_000]


def test_pool_coinbase_with_witness_reads_back():
    script = bytes.fromhex("0014") + bytes(range(20))
    parts = build_coinbase(height=1234, outputs=[TxOut(625_000_000, script)],
                           extranonce_size=8, pool_tag=b"/multipool/",
                           witness_commitment=bytes.fromhex("6a24aa21a9ed") + bytes(32))
    block = bytes(80) + b"\x01" + parts.with_witness(bytes(range(8)))
    view = read_coinbase(block)
    assert view.carries(b"/multipool/") and not view.carries(b"/multipool")
    assert view.paid_to(script) == 625_000_000
    assert len(view.outputs) == 2  # the payout and the witness commitment


@pytest.mark.parametrize("cut", [10, 81, 120, 150])
def test_truncated_block_is_refused(cut: int):
    with pytest.raises(SerializationError):
        read_coinbase(bytes.fromhex(BTC_GENESIS_BLOCK_HEX)[:cut])


def test_block_whose_first_transaction_spends_a_coin_is_refused():
    block = bytearray(bytes.fromhex(BTC_GENESIS_BLOCK_HEX))
    block[80 + 1 + 4 + 1] = 0x01  # the first input's prevout txid is no longer null
    with pytest.raises(SerializationError, match="not a coinbase"):
        read_coinbase(bytes(block))
