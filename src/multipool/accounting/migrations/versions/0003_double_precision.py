"""Difficulties and effort as doubles on MySQL/MariaDB.

Their plain FLOAT is single precision and comes back over the text protocol with 6
significant digits, so share weights and the PPLNS window differed from the other
backends. SQLite's REAL and PostgreSQL's FLOAT are doubles already: nothing to do there.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, column, nullable)
COLUMNS = [
    ("shares", "difficulty", False),
    ("shares", "share_difficulty", False),
    ("blocks", "network_difficulty", False),
    ("blocks", "effort", True),
    ("stats_minute", "accepted_difficulty", False),
]


def _retype(to: mysql.DOUBLE | mysql.FLOAT, was: mysql.DOUBLE | mysql.FLOAT) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=was,
                        existing_nullable=nullable)


def upgrade() -> None:
    _retype(mysql.DOUBLE(), mysql.FLOAT())


def downgrade() -> None:
    _retype(mysql.FLOAT(), mysql.DOUBLE())
