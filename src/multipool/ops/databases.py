"""A database and a login role per coin on PostgreSQL or MariaDB, and one read-only role
for the web process across all coins.

With ``[database] url = "postgresql://admin:pw@127.0.0.1:5432/postgres"`` (or ``mysql://``
/ ``mariadb://``) in multipool.toml, coin ``ltc`` gets:

- database ``multipool_ltc``, owned by (PostgreSQL) or fully granted to (MariaDB) role
  ``ltcpool``, whose password is the coin's own (random, kept in coin.toml). The coin role
  has no server-wide power (PostgreSQL: NOSUPERUSER NOCREATEDB NOCREATEROLE; MariaDB: no
  global privileges) and reaches no other database: on PostgreSQL, PUBLIC loses CONNECT
  and TEMPORARY on the coin's database.
- role ``multipool_web`` (one for the server, its own password), which may only read:
  PostgreSQL CONNECT on the database, USAGE on schema public, SELECT on its tables now and,
  through ``ALTER DEFAULT PRIVILEGES FOR ROLE ltcpool``, on the tables the coin's
  migrations create later; MariaDB SELECT on ``multipool_ltc``.*.

    url, needed = coin_database_plan(admin_url, "ltc", password=pw, web_password=web_pw)
    for change in needed:
        print(change)      # postgresql.role ltcpool: create (owner of ..., password set)
        change.apply()

Facts are read over a real connection with the admin URL when planning, and each change
connects again with the same admin URL when applied, so a second plan after applying
returns ``[]``. A role whose password is not the wanted one (say, coin.toml was restored
from a backup) gets one change that resets it; a role that gained server-wide powers,
or a web role that gained write access, gets them taken back.

Passwords never reach the server or its logs in clear: roles are created with a password
verifier computed here (PostgreSQL SCRAM-SHA-256, as psql's \\password does; MariaDB
mysql_native_password), which is also how the stored password is checked against the
wanted one. So the admin must be able to read ``pg_authid`` / ``mysql.user``: a
PostgreSQL superuser; a MariaDB account with every privilege and GRANT OPTION, like root.
No change's summary holds a password, and errors show the driver's message, not the SQL.

MariaDB accounts: for a server on loopback (``localhost``, 127.0.0.1, ::1) each role has
accounts at 'localhost' (Unix socket, and TCP when names are resolved), '127.0.0.1' and
'::1' (TCP with ``skip-name-resolve``); for a remote server, at '%'.

The functions are synchronous and run the async drivers multipool installs (asyncpg,
aiomysql) with :func:`asyncio.run`: call them from synchronous code, or from a thread
(``asyncio.to_thread``) when an event loop is running; in the loop's own thread they
raise RuntimeError.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from multipool.accounting.database import async_url
from multipool.errors import ConfigError, PoolError
from multipool.ops.changes import Change

WEB_ROLE = "multipool_web"
CONNECT_TIMEOUT = 10  # seconds

_PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}")
_BACKENDS = {"postgresql": "postgresql", "postgres": "postgresql",
             "mysql": "mariadb", "mariadb": "mariadb"}
_NAMES = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}

_T = TypeVar("_T")


class DatabaseSetupError(PoolError, RuntimeError):
    """The database server refused or could not be reached while creating a coin's
    database or roles. The message names the server (host:port) and the reason."""


def generate_password() -> str:
    """A new random password for a database role (128 bits, hex: safe in a URL)."""
    return secrets.token_hex(16)


def coin_role(prefix: str) -> str:
    """The coin's login role: ``ltcpool`` for ``ltc`` (the name of its pool's unix user)."""
    return f"{_check_prefix(prefix)}pool"


def coin_database(prefix: str) -> str:
    """The coin's database: ``multipool_ltc`` for ``ltc``."""
    return f"multipool_{_check_prefix(prefix)}"


def coin_database_url(admin_url: str, prefix: str, password: str) -> str:
    """Given the admin URL, the URL of the coin's database as its own role (no driver:
    multipool.accounting.database.async_url adds it)."""
    return _role_url(admin_url, prefix, coin_role(prefix), password)


def web_database_url(admin_url: str, prefix: str, web_password: str) -> str:
    """Given the admin URL, the read-only URL of the coin's database for the web process."""
    return _role_url(admin_url, prefix, WEB_ROLE, web_password)


def coin_database_plan(admin_url: str, prefix: str, *, password: str,
                       web_password: str) -> tuple[str, list[Change]]:
    """Given the server's admin URL, a coin prefix, the coin role's password and the web
    role's password, return the coin's database URL and the changes still needed for its
    database, its role and the web role's read access (``[]`` when all is in place).

    Raises ConfigError for a bad prefix, password or URL, DatabaseSetupError when the
    server cannot be reached or will not tell (both before any change).
    """
    admin = _admin(admin_url)
    _check_password(password)
    _check_password(web_password)
    url = coin_database_url(admin_url, prefix, password)
    plan = _postgresql_plan if _backend(admin) == "postgresql" else _mariadb_plan
    try:
        return url, _run(plan(admin, prefix, password, web_password))
    except SQLAlchemyError as exc:
        raise DatabaseSetupError(f"{_where(admin)}: cannot read the roles, databases and "
                                 f"grants there: {_reason(exc)}") from None


# --- plumbing --------------------------------------------------------------------------


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"bad coin prefix {prefix!r}: a lowercase letter, then up to 15 "
                          f"lowercase letters or digits")
    return prefix


def _check_password(password: str) -> None:
    # Printable ASCII: SASLprep (PostgreSQL SCRAM) leaves it as it is, so the verifier
    # computed here is the one a client's login computes.
    if not password or not all(" " <= char <= "~" for char in password):
        raise ConfigError("a database password must be non-empty printable ASCII")


def _admin(admin_url: str) -> URL:
    try:
        url = make_url(admin_url)
    except ArgumentError:
        raise ConfigError("[database] url is not a database URL") from None
    _backend(url)
    return url


def _backend(url: URL) -> str:
    name = url.drivername.split("+", 1)[0]
    if name not in _BACKENDS:
        raise ConfigError(f"a database and role per coin needs PostgreSQL or MariaDB, not "
                          f"{name!r} ([database] url)")
    return _BACKENDS[name]


def _role_url(admin_url: str, prefix: str, role: str, password: str) -> str:
    admin = _admin(admin_url)
    _check_password(password)
    return admin.set(drivername=admin.drivername.split("+", 1)[0], username=role,
                     password=password, database=coin_database(prefix)
                     ).render_as_string(hide_password=False)


def _where(url: URL) -> str:
    """'the PostgreSQL server at 127.0.0.1:5432 (as admin)': names the server, never the
    password."""
    port = f":{url.port}" if url.port else ""
    who = f" (as {url.username})" if url.username else ""
    return f"the {_NAMES[_backend(url)]} server at {url.host or 'localhost'}{port}{who}"


def _reason(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy's wrapper would add the statement)."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc) or type(exc).__name__


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError("multipool.ops.databases runs its own event loop: call it from "
                       "synchronous code or a thread (asyncio.to_thread), not in a loop")


@asynccontextmanager
async def _connect(url: URL) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection with ``url``; failures become DatabaseSetupError."""
    timeout = "timeout" if _backend(url) == "postgresql" else "connect_timeout"
    engine = create_async_engine(
        async_url(url.render_as_string(hide_password=False)), poolclass=NullPool,
        hide_parameters=True, connect_args={timeout: CONNECT_TIMEOUT})
    try:
        try:
            connection = await engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseSetupError(f"cannot connect to {_where(url)}: {_reason(exc)}"
                                     ) from None
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
        finally:
            await connection.close()
    finally:
        await engine.dispose()


async def _rows(connection: AsyncConnection, sql: str,
                **params: object) -> list[dict[str, Any]]:
    """Rows as dicts with lowercase keys and str values where the driver gave bytes."""
    result = await connection.execute(text(sql), params)
    return [{key.lower(): value.decode() if isinstance(value, bytes) else value
             for key, value in row._mapping.items()} for row in result]


@dataclass(frozen=True)
class _Sql:
    sql: str
    params: tuple[str, ...] = ()


def _sql_change(operation: str, target: str, summary: str, url: URL,
                statements: Sequence[_Sql]) -> Change:
    """A change that runs ``statements`` in order on one autocommit connection."""
    async def execute() -> None:
        async with _connect(url) as connection:
            for statement in statements:
                try:
                    if statement.params:
                        await connection.exec_driver_sql(statement.sql, statement.params)
                    else:
                        await connection.exec_driver_sql(statement.sql)
                except SQLAlchemyError as exc:
                    raise DatabaseSetupError(
                        f"{operation} {target}: {summary}: refused by {_where(url)}: "
                        f"{_reason(exc)}") from None

    return Change(operation, target, summary, lambda: _run(execute()))


# --- PostgreSQL ------------------------------------------------------------------------

_PG_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
_PG_WANTED = {"rolcanlogin": True, "rolsuper": False, "rolcreatedb": False,
              "rolcreaterole": False, "rolreplication": False, "rolbypassrls": False}
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_literal(value: str) -> str:
    # Only ever a verifier computed here (base64, digits, $ : =); quoted all the same, and
    # refused where a backslash could mean something with standard_conforming_strings off.
    if "\\" in value or "\0" in value:
        raise ValueError("refusing a backslash or NUL in a PostgreSQL literal")
    return "'" + value.replace("'", "''") + "'"


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of SCRAM-SHA-256 (RFC 5802, RFC 7677)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


def _pg_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (a fresh salt): what
    psql's \\password sends instead of the password itself."""
    salt = secrets.token_bytes(16)
    stored, server = _scram_keys(password, salt, _SCRAM_ITERATIONS)
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt).decode()}"
            f"${b64(stored).decode()}:{b64(server).decode()}")


def _pg_password_matches(stored: str | None, password: str) -> bool:
    """Whether ``stored`` (pg_authid.rolpassword) is a SCRAM-SHA-256 verifier of
    ``password``. An MD5 hash never is: it cannot log in where pg_hba.conf says
    scram-sha-256 (Debian's default), so it is replaced too."""
    if not stored:
        return False
    try:
        method, rest = stored.split("$", 1)
        iterations_salt, keys = rest.split("$", 1)
        iterations, salt = iterations_salt.split(":", 1)
        stored_key, server_key = keys.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        wanted_stored, wanted_server = _scram_keys(password, base64.b64decode(salt),
                                                   int(iterations))
        return (hmac.compare_digest(wanted_stored, base64.b64decode(stored_key))
                and hmac.compare_digest(wanted_server, base64.b64decode(server_key)))
    except (ValueError, binascii.Error):
        return False


def _pg_role_changes(admin: URL, role: str, facts: Mapping[str, Any] | None, password: str,
                     what: str) -> list[Change]:
    if facts is None:
        return [_sql_change("postgresql.role", role, f"create ({what}; {_PG_ATTRIBUTES}; "
                            "password set)", admin,
                            [_Sql(f"CREATE ROLE {_pg_ident(role)} {_PG_ATTRIBUTES} PASSWORD "
                                  f"{_pg_literal(_pg_verifier(password))}")])]
    changes = []
    wrong = [key for key, wanted in _PG_WANTED.items() if facts[key] != wanted]
    if wrong:
        changes.append(_sql_change(
            "postgresql.role", role, f"set {_PG_ATTRIBUTES} (was: "
            f"{', '.join(key.removeprefix('rol') + '=' + str(facts[key]) for key in wrong)})",
            admin, [_Sql(f"ALTER ROLE {_pg_ident(role)} {_PG_ATTRIBUTES}")]))
    if not _pg_password_matches(facts["rolpassword"], password):
        changes.append(_sql_change(
            "postgresql.role", role, "reset password (the stored one is not the wanted one "
            "or not SCRAM-SHA-256)",
            admin, [_Sql(f"ALTER ROLE {_pg_ident(role)} PASSWORD "
                         f"{_pg_literal(_pg_verifier(password))}")]))
    return changes


async def _postgresql_plan(admin: URL, prefix: str, password: str,
                           web_password: str) -> list[Change]:
    role, database = coin_role(prefix), coin_database(prefix)
    async with _connect(admin) as connection:
        me = await _rows(connection, "SELECT current_user AS name, rolsuper FROM pg_roles "
                                     "WHERE rolname = current_user")
        if not me or not me[0]["rolsuper"]:
            raise DatabaseSetupError(
                f"{_where(admin)}: the [database] url's role must be a superuser to create "
                f"roles and databases and read their passwords' verifiers")
        roles = {row["rolname"]: row for row in await _rows(
            connection, "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole,"
            " rolreplication, rolbypassrls, rolpassword FROM pg_authid"
            " WHERE rolname IN (:role, :web)", role=role, web=WEB_ROLE)}
        found = await _rows(connection, "SELECT pg_get_userbyid(datdba) AS owner "
                                        "FROM pg_database WHERE datname = :db", db=database)
        acl = {(row["grantee"], row["privilege_type"]) for row in await _rows(
            connection, "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
            " ELSE pg_get_userbyid(a.grantee) END AS grantee, a.privilege_type"
            " FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datname = :db", db=database)}
    exists, web_exists = bool(found), WEB_ROLE in roles
    # Inside the coin's database (as the admin): schema public, its tables, and the
    # default privileges of the coin role there (pg_default_acl is per database).
    public_create, web_usage, defaults = True, False, False
    tables = unreadable = writable = 0
    if exists:
        async with _connect(admin.set(database=database)) as connection:
            [row] = await _rows(
                connection, "SELECT has_schema_privilege('public', 'public', 'CREATE') AS c,"
                " EXISTS (SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a"
                " WHERE d.defaclrole = to_regrole(:role)"
                " AND d.defaclnamespace = to_regnamespace('public')"
                " AND d.defaclobjtype = 'r' AND a.grantee = to_regrole(:web)"
                " AND a.privilege_type = 'SELECT') AS defaults,"
                " (SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace('public')"
                " AND relkind IN ('r', 'p', 'v', 'm', 'f')) AS tables",
                role=role, web=WEB_ROLE)
            public_create, defaults, tables = row["c"], row["defaults"], row["tables"]
            if web_exists:
                [row] = await _rows(
                    connection, "SELECT has_schema_privilege(:web, 'public', 'USAGE') AS u,"
                    " count(*) FILTER (WHERE NOT has_table_privilege(:web, c.oid, 'SELECT'))"
                    " AS unreadable, count(*) FILTER (WHERE has_table_privilege(:web, c.oid,"
                    " 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')) AS writable"
                    " FROM pg_class c WHERE c.relnamespace = to_regnamespace('public')"
                    " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", web=WEB_ROLE)
                web_usage, unreadable, writable = row["u"], row["unreadable"], row["writable"]
            else:
                unreadable = tables

    db, web, coin = _pg_ident(database), _pg_ident(WEB_ROLE), _pg_ident(role)
    in_db = admin.set(database=database)
    changes = _pg_role_changes(admin, role, roles.get(role), password,
                               f"owner of {database}")
    changes += _pg_role_changes(admin, WEB_ROLE, roles.get(WEB_ROLE), web_password,
                                "read-only, for the web process")
    if not exists:
        changes.append(_sql_change(
            "postgresql.database", database, f"create (owner {role}, UTF8)", admin,
            [_Sql(f"CREATE DATABASE {db} OWNER {coin} TEMPLATE template0 ENCODING 'UTF8'")]))
    elif found[0]["owner"] != role:
        changes.append(_sql_change(
            "postgresql.database", database, f"owner {found[0]['owner']} -> {role}", admin,
            [_Sql(f"ALTER DATABASE {db} OWNER TO {coin}")]))
    public = sorted(privilege for grantee, privilege in acl if grantee == "PUBLIC")
    if not exists or public:
        changes.append(_sql_change(
            "postgresql.grant", database,
            f"revoke {', '.join(public or ['CONNECT', 'TEMPORARY'])} from PUBLIC", admin,
            [_Sql(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")]))
    if not exists or (WEB_ROLE, "CONNECT") not in acl:
        changes.append(_sql_change(
            "postgresql.grant", database, f"CONNECT to {WEB_ROLE}", admin,
            [_Sql(f"GRANT CONNECT ON DATABASE {db} TO {web}")]))
    if not exists or not web_usage or public_create:
        changes.append(_sql_change(
            "postgresql.grant", f"{database} schema public",
            f"USAGE to {WEB_ROLE}, no CREATE for PUBLIC", in_db,
            [_Sql(f"GRANT USAGE ON SCHEMA public TO {web}"),
             _Sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")]))
    if unreadable or writable:
        changes.append(_sql_change(
            "postgresql.grant", f"{database} tables in schema public",
            f"SELECT only to {WEB_ROLE} ({tables} tables)", in_db,
            [_Sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {web}"),
             _Sql("REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
                  f" ON ALL TABLES IN SCHEMA public FROM PUBLIC, {web}")]))
    if not defaults:
        changes.append(_sql_change(
            "postgresql.grant", f"{database} future tables of {role}",
            f"SELECT to {WEB_ROLE} by default", in_db,
            [_Sql(f"ALTER DEFAULT PRIVILEGES FOR ROLE {coin} IN SCHEMA public"
                  f" GRANT SELECT ON TABLES TO {web}")]))
    return changes


# --- MariaDB ---------------------------------------------------------------------------

_LOOPBACK_ACCOUNTS = ("localhost", "127.0.0.1", "::1")


def _mariadb_hosts(admin: URL) -> tuple[str, ...]:
    """The account hosts for the roles: loopback for a server on loopback, else '%'."""
    host = admin.host or "localhost"
    if host == "localhost":
        return _LOOPBACK_ACCOUNTS
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    return _LOOPBACK_ACCOUNTS if loopback else ("%",)


def _mariadb_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _mariadb_grant_target(database: str) -> str:
    """``db``.* in GRANT, with _ and % escaped: unescaped they are wildcards there."""
    return _mariadb_ident(database.replace("_", r"\_").replace("%", r"\%")) + ".*"


def _mariadb_hash(password: str) -> str:
    """The mysql_native_password hash of ``password``: '*' + SHA1(SHA1(password)), hex."""
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324 - the protocol's hash
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def _privileges(row: Mapping[str, Any]) -> dict[str, bool]:
    """The *_priv columns of a mysql.user or mysql.db row: {'select': True, ...}."""
    return {key.removesuffix("_priv"): value == "Y"
            for key, value in row.items() if key.endswith("_priv")}


def _mariadb_role_changes(admin: URL, role: str, hosts: tuple[str, ...],
                          accounts: Mapping[str, Mapping[str, Any]], password: str,
                          what: str) -> list[Change]:
    wanted = _mariadb_hash(password)
    identified = "IDENTIFIED WITH mysql_native_password AS %s"
    changes = []
    missing = [host for host in hosts if host not in accounts]
    if missing:
        changes.append(_sql_change(
            "mariadb.user", role, f"create at {', '.join(missing)} ({what}; password set)",
            admin, [_Sql(f"CREATE USER %s@%s {identified}", (role, host, wanted))
                    for host in missing]))
    stale = [host for host in hosts if host in accounts
             and (accounts[host]["plugin"] != "mysql_native_password"
                  or not hmac.compare_digest(accounts[host]["authentication_string"] or "",
                                             wanted))]
    if stale:
        changes.append(_sql_change(
            "mariadb.user", role, "reset password (the stored one is not the wanted one)",
            admin, [_Sql(f"ALTER USER %s@%s {identified}", (role, host, wanted))
                    for host in stale]))
    revoke = []
    for host in hosts:
        if host in accounts:
            held = _privileges(accounts[host])
            if any(on for name, on in held.items() if name != "grant"):
                revoke.append(_Sql("REVOKE ALL PRIVILEGES ON *.* FROM %s@%s", (role, host)))
            if held.get("grant"):
                revoke.append(_Sql("REVOKE GRANT OPTION ON *.* FROM %s@%s", (role, host)))
    if revoke:
        changes.append(_sql_change("mariadb.user", role, "revoke server-wide privileges",
                                   admin, revoke))
    return changes


async def _mariadb_plan(admin: URL, prefix: str, password: str,
                        web_password: str) -> list[Change]:
    role, database = coin_role(prefix), coin_database(prefix)
    hosts = _mariadb_hosts(admin)
    pattern = database.replace("_", "\\_")  # as mysql.db holds our escaped grant target
    async with _connect(admin) as connection:
        users = await _rows(connection, "SELECT * FROM mysql.user WHERE User IN (:role, :web)",
                            role=role, web=WEB_ROLE)
        grants = await _rows(connection, "SELECT * FROM mysql.db WHERE Db = :pattern"
                                         " AND User IN (:role, :web)",
                             pattern=pattern, role=role, web=WEB_ROLE)
        exists = await _rows(connection, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
                                         " WHERE SCHEMA_NAME = :db", db=database)

    def accounts(user: str) -> dict[str, dict[str, Any]]:
        return {row["host"].lower(): row for row in users if row["user"] == user}

    def granted(user: str) -> dict[str, dict[str, bool]]:
        return {row["host"].lower(): _privileges(row) for row in grants if row["user"] == user}

    changes = _mariadb_role_changes(admin, role, hosts, accounts(role), password,
                                    f"all privileges on {database} only")
    changes += _mariadb_role_changes(admin, WEB_ROLE, hosts, accounts(WEB_ROLE),
                                     web_password, "read-only, for the web process")
    target = _mariadb_grant_target(database)
    if not exists:
        changes.append(_sql_change(
            "mariadb.database", database, "create (utf8mb4)", admin,
            [_Sql(f"CREATE DATABASE {_mariadb_ident(database)} CHARACTER SET utf8mb4")]))
    coin_grants = granted(role)
    short = [host for host in hosts if host not in coin_grants or not all(
        on for name, on in coin_grants[host].items() if name != "grant")]
    if short:
        changes.append(_sql_change(
            "mariadb.grant", database, f"ALL PRIVILEGES to {role} (at {', '.join(short)})",
            admin, [_Sql(f"GRANT ALL PRIVILEGES ON {target} TO %s@%s", (role, host))
                    for host in short]))
    statements: list[_Sql] = []
    at: list[str] = []
    web_grants = granted(WEB_ROLE)
    for host in hosts:
        held = web_grants.get(host, {})
        extra = any(yes for name, yes in held.items() if name not in ("select", "grant"))
        if held.get("select") and not extra and not held.get("grant"):
            continue
        at.append(host)
        if extra:
            statements.append(_Sql(f"REVOKE ALL PRIVILEGES ON {target} FROM %s@%s",
                                   (WEB_ROLE, host)))
        if held.get("grant"):
            statements.append(_Sql(f"REVOKE GRANT OPTION ON {target} FROM %s@%s",
                                   (WEB_ROLE, host)))
        statements.append(_Sql(f"GRANT SELECT ON {target} TO %s@%s", (WEB_ROLE, host)))
    if statements:
        changes.append(_sql_change("mariadb.grant", database,
                                   f"SELECT only to {WEB_ROLE} (at {', '.join(at)})",
                                   admin, statements))
    return changes
