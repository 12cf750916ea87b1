# The README's commands. `make setup` is idempotent and both other targets run it first.
VENV := .venv/bin

.PHONY: setup demo test lint bench

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/multipool demo

test: setup
	$(VENV)/ruff check src tests bench
	$(VENV)/mypy src
	$(VENV)/python -m pytest -q

lint: setup
	$(VENV)/ruff check src tests bench
	$(VENV)/mypy src

bench: setup
	$(VENV)/python bench/shares_per_second.py
	$(VENV)/python bench/idle_connections.py
	$(VENV)/python bench/share_inserts.py --sqlite-normal
	$(VENV)/python bench/block_durability.py
	$(VENV)/python bench/pplns_split.py
	$(VENV)/python bench/payment_run.py
	$(VENV)/python bench/web_load.py
