"""A database and a role per coin, and the web's read-only role, on real PostgreSQL and
MariaDB servers (multipool.ops.databases).

PostgreSQL runs with password authentication for every role but the admin (``pool``),
so that a wrong password is refused as on a real server; MariaDB always checks passwords.
Without the servers the tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import head_revision, upgrade
from multipool.accounting.schema import metadata
from multipool.errors import ConfigError
from multipool.ops.changes import Change
from multipool.ops.databases import (
    WEB_ROLE,
    DatabaseSetupError,
    coin_database,
    coin_database_plan,
    coin_role,
    generate_password,
    web_database_url,
)
from multipool.testdb import MariaDBServer, PostgresServer

WEB_PASSWORD = generate_password()

# What each server says when a role may not do something, or gives a wrong password.
DENIED = {"42501",  # PostgreSQL insufficient_privilege
          1044, 1142, 1143, 1227}  # MariaDB: to database / command / column / privilege
BAD_PASSWORD = {"28P01",  # PostgreSQL invalid_password
                1045}  # MariaDB: access denied for user (using password: YES)


@pytest.fixture(scope="module")
def mariadb_admin(mariadb: MariaDBServer) -> str:
    admin = make_url(mariadb.create_admin("mpadmin"))
    return admin.set(drivername="mysql").render_as_string(hide_password=False)


@pytest.fixture(params=["postgresql", "mariadb"])
def admin_url(request: pytest.FixtureRequest) -> str:
    """The operator's [database] url: a superuser / an account with GRANT OPTION."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgresql_passwords")
        return f"postgresql://{server.user}@{server.host}:{server.port}/postgres"
    return str(request.getfixturevalue("mariadb_admin"))


def new_prefix() -> str:
    return "t" + secrets.token_hex(4)


def apply(changes: list[Change]) -> None:
    for change in changes:
        change.apply()


def set_up(admin_url: str, prefix: str, password: str) -> str:
    url, changes = coin_database_plan(admin_url, prefix, password=password,
                                      web_password=WEB_PASSWORD)
    assert changes
    assert_no_secret(changes, password, WEB_PASSWORD, admin_url)
    apply(changes)
    return url


def assert_no_secret(changes: list[Change], *secrets_: str) -> None:
    for change in changes:
        shown = " ".join((str(change), repr(change), change.summary, change.target))
        for secret in secrets_:
            password = make_url(secret).password if "://" in secret else secret
            if password:
                assert password not in shown, change


async def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        rows: list[tuple[object, ...]] = []
        async with engine.begin() as connection:
            for statement in statements:
                result = await connection.execute(text(statement))
                if result.returns_rows:
                    rows = [tuple(row) for row in result.all()]
        return rows
    finally:
        await engine.dispose()


def sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    return asyncio.run(_sql(url, *statements))


def error_code(url: str, statement: str) -> object:
    """Run ``statement`` expecting the server to refuse it; return SQLSTATE or errno."""
    with pytest.raises(DBAPIError) as caught:
        sql(url, statement)
    original = caught.value.orig
    if original.args and isinstance(original.args[0], int):
        return original.args[0]  # MariaDB's error number
    return getattr(original, "sqlstate", None)


async def _migrate(url: str) -> tuple[str | None, str]:
    engine = create_engine(url)
    try:
        return await upgrade(engine)
    finally:
        await engine.dispose()


def in_database(admin_url: str, database: str) -> str:
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


# --- on both servers -----------------------------------------------------------------


def test_a_coin_gets_its_own_database_and_role_and_a_second_plan_is_empty(admin_url: str):
    prefix, password = new_prefix(), generate_password()
    url = set_up(admin_url, prefix, password)
    parsed = make_url(url)
    assert parsed.drivername == make_url(admin_url).drivername.split("+")[0]
    assert (parsed.username, parsed.password, parsed.database) == (
        coin_role(prefix), password, coin_database(prefix))
    assert (parsed.host, parsed.port) == (make_url(admin_url).host, make_url(admin_url).port)

    # The migrations run as the coin's role, and it writes and reads its tables.
    assert asyncio.run(_migrate(url)) == (None, head_revision())
    sql(url, "CREATE TABLE probe (id INTEGER PRIMARY KEY, note VARCHAR(20))",
        "INSERT INTO probe VALUES (1, 'one')",
        "INSERT INTO settings (name, value) VALUES ('payments_paused', 'no')")
    assert sql(url, "SELECT note FROM probe") == [("one",)]

    again_url, again = coin_database_plan(admin_url, prefix, password=password,
                                          web_password=WEB_PASSWORD)
    assert (again_url, again) == (url, [])


def test_the_web_role_reads_every_table_and_changes_nothing(admin_url: str):
    prefix = new_prefix()
    url = set_up(admin_url, prefix, generate_password())
    asyncio.run(_migrate(url))  # tables created after the grants, by the coin's role
    sql(url, "CREATE TABLE probe (id INTEGER PRIMARY KEY, note VARCHAR(20))",
        "INSERT INTO probe VALUES (1, 'one')",
        "INSERT INTO settings (name, value) VALUES ('payments_paused', 'no')")

    web = web_database_url(admin_url, prefix, WEB_PASSWORD)
    assert make_url(web).username == WEB_ROLE
    assert make_url(web).database == coin_database(prefix)
    assert sql(web, "SELECT note FROM probe") == [("one",)]
    assert sql(web, "SELECT value FROM settings") == [("no",)]
    assert sql(web, "SELECT count(*) FROM shares") == [(0,)]
    for statement in ("INSERT INTO probe VALUES (2, 'two')",
                      "UPDATE probe SET note = 'changed'",
                      "DELETE FROM probe",
                      "DELETE FROM settings",
                      "CREATE TABLE web_table (id INTEGER)",
                      "DROP TABLE probe"):
        assert error_code(web, statement) in DENIED, statement
    assert sql(url, "SELECT note FROM probe") == [("one",)]


def test_a_coin_role_cannot_reach_another_coins_database(admin_url: str):
    ltc, doge = new_prefix(), new_prefix()
    ltc_url = set_up(admin_url, ltc, generate_password())
    doge_url = set_up(admin_url, doge, generate_password())
    sql(doge_url, "CREATE TABLE secret (id INTEGER)", "INSERT INTO secret VALUES (7)")

    trespass = make_url(ltc_url).set(database=coin_database(doge)).render_as_string(
        hide_password=False)
    assert error_code(trespass, "SELECT id FROM secret") in DENIED
    # ... while the web role reads both coins' databases.
    assert sql(web_database_url(admin_url, doge, WEB_PASSWORD), "SELECT id FROM secret") == [
        (7,)]
    sql(ltc_url, "CREATE TABLE mine (id INTEGER)")
    assert sql(web_database_url(admin_url, ltc, WEB_PASSWORD), "SELECT id FROM mine") == []
    # Nor may it make roles (PostgreSQL NOCREATEROLE; MariaDB no CREATE USER privilege).
    intruder = "CREATE ROLE intruder" if "postgresql" in admin_url else "CREATE USER intruder"
    assert error_code(ltc_url, intruder) in DENIED


def test_server_wide_powers_given_to_a_coin_role_are_taken_back(admin_url: str):
    ltc, doge = new_prefix(), new_prefix()
    password = generate_password()
    ltc_url = set_up(admin_url, ltc, password)
    doge_url = set_up(admin_url, doge, generate_password())
    sql(doge_url, "CREATE TABLE secret (id INTEGER)")
    if "postgresql" in admin_url:
        sql(admin_url, f"ALTER ROLE {coin_role(ltc)} CREATEDB CREATEROLE")
        assert sql(ltc_url, "CREATE ROLE intruder", "DROP ROLE intruder") == []
    else:
        sql(admin_url, f"GRANT SELECT ON *.* TO '{coin_role(ltc)}'@'127.0.0.1'")
        assert sql(make_url(ltc_url).set(database=coin_database(doge)).render_as_string(
            hide_password=False), "SELECT id FROM secret") == []

    changes = coin_database_plan(admin_url, ltc, password=password,
                                 web_password=WEB_PASSWORD)[1]
    assert [(change.operation.split(".")[1], change.target) for change in changes] == [
        ("role" if "postgresql" in admin_url else "user", coin_role(ltc))]
    apply(changes)
    assert coin_database_plan(admin_url, ltc, password=password,
                              web_password=WEB_PASSWORD)[1] == []
    if "postgresql" in admin_url:
        assert error_code(ltc_url, "CREATE ROLE intruder") in DENIED
    else:
        assert error_code(make_url(ltc_url).set(database=coin_database(doge)).render_as_string(
            hide_password=False), "SELECT id FROM secret") in DENIED


def test_a_changed_password_is_reset_by_exactly_one_change(admin_url: str):
    prefix, old, new = new_prefix(), generate_password(), generate_password()
    old_url = set_up(admin_url, prefix, old)

    new_url, changes = coin_database_plan(admin_url, prefix, password=new,
                                          web_password=WEB_PASSWORD)
    assert len(changes) == 1, [str(change) for change in changes]
    assert changes[0].target == coin_role(prefix)
    assert "reset password" in changes[0].summary
    assert_no_secret(changes, old, new, WEB_PASSWORD, admin_url)
    apply(changes)

    assert sql(new_url, "SELECT 1") == [(1,)]
    assert error_code(old_url, "SELECT 1") in BAD_PASSWORD
    assert coin_database_plan(admin_url, prefix, password=new,
                              web_password=WEB_PASSWORD)[1] == []


def test_an_md5_password_is_replaced_by_a_scram_one(postgresql_passwords: PostgresServer):
    """An MD5 hash cannot log in where pg_hba.conf says scram-sha-256 (Debian's default)."""
    admin_url = f"postgresql://{postgresql_passwords.user}@{postgresql_passwords.host}:{postgresql_passwords.port}/postgres"
    prefix, password = new_prefix(), generate_password()
    url = set_up(admin_url, prefix, password)
    sql(admin_url, "SET password_encryption = 'md5'",
        f"ALTER ROLE {coin_role(prefix)} PASSWORD '{password}'")
    stored = f"SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = '{coin_role(prefix)}'"
    assert str(sql(admin_url, stored)[0][0]).startswith("md5")
    assert error_code(url, "SELECT 1") in BAD_PASSWORD

    changes = coin_database_plan(admin_url, prefix, password=password,
                                 web_password=WEB_PASSWORD)[1]
    assert [change.summary.split(" (")[0] for change in changes] == ["reset password"]
    apply(changes)
    assert sql(admin_url, stored) == [("SCRAM-SHA-256",)]
    assert sql(url, "SELECT 1") == [(1,)]


def test_lost_read_access_of_the_web_role_is_found_and_given_back(admin_url: str):
    prefix = new_prefix()
    url = set_up(admin_url, prefix, generate_password())
    sql(url, "CREATE TABLE probe (id INTEGER)")
    database = coin_database(prefix)
    if make_url(admin_url).get_backend_name() == "postgresql":
        sql(in_database(admin_url, database), f"REVOKE SELECT ON probe FROM {WEB_ROLE}",
            f"GRANT INSERT ON probe TO {WEB_ROLE}")
    else:
        escaped = database.replace("_", "\\_")  # the grant target as multipool writes it
        sql(admin_url, f"REVOKE SELECT ON `{escaped}`.* FROM '{WEB_ROLE}'@'127.0.0.1'",
            f"GRANT INSERT ON `{escaped}`.* TO '{WEB_ROLE}'@'127.0.0.1'")
    web = web_database_url(admin_url, prefix, WEB_PASSWORD)
    sql(web, "INSERT INTO probe VALUES (1)")  # the drift is real

    changes = coin_database_plan(admin_url, prefix, password=make_url(url).password or "",
                                 web_password=WEB_PASSWORD)[1]
    assert [change.operation.split(".")[1] for change in changes] == ["grant"]
    apply(changes)
    assert sql(web, "SELECT id FROM probe") == [(1,)]
    assert error_code(web, "INSERT INTO probe VALUES (2)") in DENIED
    assert coin_database_plan(admin_url, prefix, password=make_url(url).password or "",
                              web_password=WEB_PASSWORD)[1] == []


def test_an_unreachable_server_is_a_clear_error_naming_it(admin_url: str):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    closed = make_url(admin_url).set(port=port).render_as_string(hide_password=False)
    with pytest.raises(DatabaseSetupError) as caught:
        coin_database_plan(closed, new_prefix(), password=generate_password(),
                           web_password=WEB_PASSWORD)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "cannot connect" in str(caught.value)


def test_a_refused_admin_login_is_a_clear_error_without_the_password(admin_url: str):
    wrong = make_url(admin_url).set(username="nosuchadmin", password="Wr0ngAdminPw")
    with pytest.raises(DatabaseSetupError) as caught:
        coin_database_plan(wrong.render_as_string(hide_password=False), new_prefix(),
                           password=generate_password(), web_password=WEB_PASSWORD)
    message = str(caught.value)
    assert f"127.0.0.1:{wrong.port}" in message and "nosuchadmin" in message
    assert "Wr0ngAdminPw" not in message


# --- without a server ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "LTC", "1ltc", "ltc-x", "l" * 17, "ltc;drop"])
def test_a_bad_prefix_is_refused(prefix: str):
    with pytest.raises(ConfigError, match="prefix"):
        coin_database_plan("postgresql://admin@127.0.0.1:1/postgres", prefix,
                           password="x", web_password="y")


@pytest.mark.parametrize("password", ["", "naïve", "tab\there", "nul\0"])
def test_a_password_a_server_might_read_differently_is_refused(password: str):
    with pytest.raises(ConfigError, match="printable ASCII"):
        coin_database_plan("postgresql://admin@127.0.0.1:1/postgres", "ltc",
                           password=password, web_password="y")


def test_sqlite_has_no_roles():
    with pytest.raises(ConfigError, match="PostgreSQL or MariaDB"):
        coin_database_plan("sqlite:////tmp/pool.db", "ltc", password="x", web_password="y")


def test_urls_have_no_driver_and_escape_the_password():
    assert web_database_url("postgresql+asyncpg://admin:pw@db.example:5433/postgres?ssl=require",
                            "ltc", "p@ss/word") == (
        "postgresql://multipool_web:p%40ss%2Fword@db.example:5433/multipool_ltc?ssl=require")
    assert web_database_url("mariadb://root:pw@127.0.0.1/", "ltc", "w") == (
        "mariadb://multipool_web:w@127.0.0.1/multipool_ltc")
    assert (coin_role("ltc"), coin_database("ltc")) == ("ltcpool", "multipool_ltc")


async def test_refuses_to_run_inside_an_event_loop():
    with pytest.raises(RuntimeError, match=re.escape("asyncio.to_thread")):
        coin_database_plan("postgresql://admin@127.0.0.1:1/postgres", "ltc", password="x",
                           web_password="y")
    # ... and is fine from a thread.
    with pytest.raises(DatabaseSetupError, match=re.escape("127.0.0.1:1")):
        await asyncio.to_thread(coin_database_plan, "postgresql://admin@127.0.0.1:1/postgres",
                                "ltc", password="x", web_password="y")


def test_the_web_role_reads_every_table_of_the_newest_schema(admin_url: str):
    """Every table the migrations create (including the later ones, e.g. revision
    0005's stats_pool_minute) is readable by the web role, and none writable."""
    prefix = new_prefix()
    url = set_up(admin_url, prefix, generate_password())
    asyncio.run(_migrate(url))
    web = web_database_url(admin_url, prefix, WEB_PASSWORD)
    tables = sorted(metadata.tables)
    assert "stats_pool_minute" in tables and len(tables) >= 14
    for table in tables:
        assert sql(web, f"SELECT count(*) FROM {table}") == [(0,)], table
    assert error_code(web, "DELETE FROM stats_pool_minute") in DENIED
    assert error_code(web, "INSERT INTO balances (address, amount) VALUES ('x', 1)") in DENIED
