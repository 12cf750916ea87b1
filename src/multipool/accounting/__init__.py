"""Accounting: shares, blocks, rewards, balances and payments in the coin's database."""
