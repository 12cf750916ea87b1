"""The pure parts of building a payment (payment_tx.py): sizes, fees, which coins are
spendable, which are chosen, and the check that the wallet built what was asked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from multipool.accounting.payment_tx import (
    BuildError,
    Coin,
    _checked,
    estimated_size,
    fee_for,
    input_size,
    select_coins,
    spendable_coins,
)

P2WPKH = "0014" + "ab" * 20
P2PKH = "76a914" + "ab" * 20 + "88ac"


def test_sizes_and_fees_round_up():
    assert input_size(P2WPKH) == 68 and input_size(P2PKH) == 148
    assert input_size("a914" + "00" * 20 + "87") == 91 and input_size("5120" + "00" * 32) == 58
    coins = [Coin("a", 0, 1, 68), Coin("b", 0, 1, 148)]
    # 11 + 68 + 148 + 3 x 43: a 34-byte script per output bounds every common payout.
    assert estimated_size(coins, 3) == 11 + 216 + 129
    assert fee_for(1000, 1000) == 1000 and fee_for(1001, 1000) == 1001
    assert fee_for(250, 1) == 1  # never rounded down to nothing


def test_spendable_coins_skip_mweb_unconfirmed_unsafe_and_open_ones():
    unspent = [
        {"txid": "big", "vout": 0, "amount": Decimal("2.5"), "confirmations": 5,
         "spendable": True, "safe": True, "scriptPubKey": P2WPKH},
        {"txid": "mweb", "amount": Decimal("100"), "confirmations": 5, "spendable": True,
         "address": "tmweb1qq..."},  # litecoind: no vout, no scriptPubKey
        {"txid": "fresh", "vout": 1, "amount": Decimal("9"), "confirmations": 0,
         "spendable": True, "safe": True, "scriptPubKey": P2WPKH},
        {"txid": "unsafe", "vout": 0, "amount": Decimal("9"), "confirmations": 3,
         "spendable": True, "safe": False, "scriptPubKey": P2WPKH},
        {"txid": "watch", "vout": 0, "amount": Decimal("9"), "confirmations": 3,
         "spendable": False, "safe": True, "scriptPubKey": P2WPKH},
        {"txid": "open", "vout": 2, "amount": Decimal("9"), "confirmations": 3,
         "spendable": True, "safe": True, "scriptPubKey": P2WPKH},
        {"txid": "small", "vout": 3, "amount": Decimal("0.00000001"), "confirmations": 3,
         "spendable": True, "safe": True, "scriptPubKey": P2PKH},
    ]
    coins = spendable_coins(unspent, 8, {("open", 2)})
    assert coins == [Coin("big", 0, 250_000_000, 68), Coin("small", 3, 1, 148)]


def test_select_coins_largest_first_with_the_fee_on_top():
    coins = [Coin("a", 0, 1000, 68), Coin("b", 0, 500, 68), Coin("c", 0, 400, 68)]
    # 1000 covers 900 with room for the fee of one input, two outputs at 1 unit/vbyte:
    # 11 + 68 + 2 x 43 = 165 -> 900 + 165 > 1000: a second coin is needed.
    assert select_coins(coins, 900, 1, 1000, fee_on_top=True) == coins[:2]
    assert select_coins(coins, 900, 1, 1000, fee_on_top=False) == coins[:1]
    assert select_coins(coins, 1900, 1, 0, fee_on_top=False) == coins
    assert select_coins(coins, 1901, 1, 0, fee_on_top=False) is None


def decoded(vin: list[tuple[str, int]], vout: list[tuple[str, str]]) -> dict:
    return {"txid": "t" * 64, "vin": [{"txid": t, "vout": v} for t, v in vin],
            "vout": [{"value": Decimal(v), "scriptPubKey": {"addresses": [a]}}
                     for a, v in vout]}


def test_built_transaction_must_be_the_one_asked_for():
    coin = Coin("in", 0, 100_000_000, 68)
    good = decoded([("in", 0)], [("x", "0.6"), ("y", "0.3"), ("change", "0.0999")])
    built = _checked(good, "hex", [("x", 60_000_000), ("y", 30_000_000)], [coin], 10_000, 8, ())
    assert built.outputs == (("x", 60_000_000, 0), ("y", 30_000_000, 0)) and built.fee == 10_000
    with pytest.raises(BuildError, match="fee"):
        _checked(good, "hex", [("x", 60_000_000), ("y", 30_000_000)], [coin], 9_999, 8, ())
    with pytest.raises(BuildError, match="spending"):
        _checked(decoded([("other", 0)], [("x", "0.6")]), "h", [("x", 60_000_000)], [coin],
                 40_000_000, 8, ())
    with pytest.raises(BuildError, match="does not pay"):
        _checked(good, "hex", [("y", 60_000_000), ("x", 30_000_000)], [coin], 10_000, 8, ())
    with pytest.raises(BuildError, match="not 61000000"):
        _checked(good, "hex", [("x", 61_000_000), ("y", 29_000_000)], [coin], 10_000, 8, ())
    mweb = decoded([("in", 0)], [("x", "0.6")])
    mweb["vout"][0]["ismweb"] = True
    with pytest.raises(BuildError, match="MWEB"):
        _checked(mweb, "hex", [("x", 60_000_000)], [coin], 40_000_000, 8, ())
    # The miners pay: each output short by its share; the shares make up the fee.
    shared = decoded([("in", 0)], [("x", "0.59995"), ("y", "0.29995"), ("change", "0.1")])
    built = _checked(shared, "hex", [("x", 60_000_000), ("y", 30_000_000)], [coin], 10_000,
                     8, (0, 1))
    assert built.outputs == (("x", 59_995_000, 5_000), ("y", 29_995_000, 5_000))
