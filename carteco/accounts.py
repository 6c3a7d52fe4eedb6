"""Staff accounts for the moderation pages: scrypt passwords, throttled logins, sessions, CSRF.

Roles: ``moderator`` (decides proposals) and ``admin`` (also manages trusted structures and edit
links). Passwords are hashed with ``hashlib.scrypt`` (standard library). A session is a
server-side row keyed by the sha256 of a random token (the cookie); a login always makes a new
session (no fixation) and carries its own CSRF token. API tokens (`carteco.auth`) stay for
scripts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.errors import CartecoError
from carteco.models import STAFF_ROLES

# scrypt cost: 16 MiB of memory per hash (n * r * 128 bytes), about 50 ms.
_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 10
THROTTLE_WINDOW = "15 minutes"


class AccountError(CartecoError):
    """A staff account that cannot be created, found or used."""

    kind = "invalid"


@dataclass(frozen=True)
class StaffUser:
    """A logged-in staff member."""

    id: int
    login: str
    role: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == "admin"


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` (hex) of a password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when `password` matches a `hash_password` value (constant-time compare)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# A stored hash that matches nothing: unknown logins cost the same scrypt as known ones.
_DUMMY = hash_password(secrets.token_hex(16))


def _check_new(login: str, password: str, role: str) -> None:
    if not login or len(login) > 100 or not login.isprintable():
        raise AccountError("identifiant invalide (1 à 100 caractères imprimables)")
    if role not in STAFF_ROLES:
        raise AccountError(f"rôle inconnu : {role!r} (attendu : {', '.join(STAFF_ROLES)})")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"mot de passe trop court ({MIN_PASSWORD} caractères au moins)")


def add_user(
    conn: Connection, login: str, password: str, role: str = "moderator", email: str | None = None
) -> int:
    """Create a staff user; its id."""
    _check_new(login, password, role)
    exists = conn.execute(
        sa.text("SELECT 1 FROM staff_users WHERE login = :l"), {"l": login}
    ).first()
    if exists:
        raise AccountError(f"l'utilisateur {login!r} existe déjà", kind="conflict")
    uid = conn.execute(
        sa.text(
            "INSERT INTO staff_users (login, role, password_hash, email) "
            "VALUES (:l, :r, :h, :e) RETURNING id"
        ),
        {"l": login, "r": role, "h": hash_password(password), "e": email},
    ).scalar_one()
    return int(uid)


def set_password(conn: Connection, login: str, password: str) -> None:
    """Change a user's password and end its sessions."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"mot de passe trop court ({MIN_PASSWORD} caractères au moins)")
    uid = conn.execute(
        sa.text("UPDATE staff_users SET password_hash = :h WHERE login = :l RETURNING id"),
        {"h": hash_password(password), "l": login},
    ).scalar()
    if uid is None:
        raise AccountError(f"utilisateur inconnu : {login!r}", kind="not_found")
    conn.execute(sa.text("DELETE FROM staff_sessions WHERE user_id = :u"), {"u": uid})


def disable_user(conn: Connection, login: str) -> None:
    """Disable a user and end its sessions."""
    uid = conn.execute(
        sa.text(
            "UPDATE staff_users SET disabled_at = coalesce(disabled_at, now()) "
            "WHERE login = :l RETURNING id"
        ),
        {"l": login},
    ).scalar()
    if uid is None:
        raise AccountError(f"utilisateur inconnu : {login!r}", kind="not_found")
    conn.execute(sa.text("DELETE FROM staff_sessions WHERE user_id = :u"), {"u": uid})


def list_users(conn: Connection) -> list[dict[str, Any]]:
    """Every staff user (never the hash)."""
    rows = conn.execute(
        sa.text(
            "SELECT id, login, role, email, disabled_at, created_at FROM staff_users ORDER BY id"
        )
    ).mappings()
    return [dict(r) for r in rows]


def _throttled(conn: Connection, keys: list[str], limit: int) -> bool:
    if limit <= 0:
        return False
    n = conn.execute(
        sa.text(
            "SELECT max(c) FROM (SELECT count(*) AS c FROM login_failures "
            "WHERE key = ANY(:k) AND at > now() - CAST(:w AS interval) GROUP BY key) s"
        ),
        {"k": keys, "w": THROTTLE_WINDOW},
    ).scalar()
    return bool(n and n >= limit)


def login(
    conn: Connection,
    login_name: str,
    password: str,
    client: str,
    *,
    max_failures: int = 5,
    hours: int = 12,
    old_token: str | None = None,
) -> tuple[str, StaffUser]:
    """Check a password and open a new session: (cookie token, user).

    Refused (kind `too_many`) after `max_failures` failures in 15 minutes for the account or
    the client address, even with the right password. Any session the browser already had is
    ended: the new one has a fresh token (no fixation).
    """
    keys = [f"login:{login_name[:100]}", f"ip:{client}"]
    if _throttled(conn, keys, max_failures):
        raise AccountError(
            "trop d'échecs de connexion ; réessayez dans quelques minutes", kind="too_many"
        )
    row = (
        conn.execute(
            sa.text(
                "SELECT id, login, role, password_hash, disabled_at FROM staff_users "
                "WHERE login = :l"
            ),
            {"l": login_name},
        )
        .mappings()
        .first()
    )
    ok = check_password(password, row["password_hash"] if row else _DUMMY)
    if row is None or not ok or row["disabled_at"] is not None:
        raise AccountError("identifiant ou mot de passe incorrect", kind="unauthorized")
    if old_token:
        logout(conn, old_token)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        sa.text(
            "INSERT INTO staff_sessions (token_hash, user_id, csrf_token, expires_at) "
            "VALUES (:h, :u, :c, now() + make_interval(hours => :hours))"
        ),
        {"h": _sha(token), "u": row["id"], "c": csrf, "hours": hours},
    )
    conn.execute(
        sa.text("DELETE FROM login_failures WHERE key = :k"), {"k": keys[0]}
    )  # a success clears the account's count, never the address's
    staff_audit(conn, row["login"], "login", f"staff_users/{row['id']}", {})
    return token, StaffUser(int(row["id"]), row["login"], row["role"], csrf)


def record_failure(conn: Connection, login_name: str, client: str) -> None:
    """Count one failed login against the account and the client address."""
    for key in (f"login:{login_name[:100]}", f"ip:{client}"):
        conn.execute(sa.text("INSERT INTO login_failures (key) VALUES (:k)"), {"k": key})


def open_session(
    engine: Engine,
    login_name: str,
    password: str,
    client: str,
    *,
    max_failures: int = 5,
    hours: int = 12,
    old_token: str | None = None,
) -> tuple[str, StaffUser]:
    """`login` in a transaction of its own; a failure is counted in another, which commits."""
    try:
        with engine.begin() as conn:
            return login(conn, login_name, password, client, max_failures=max_failures,
                         hours=hours, old_token=old_token)  # fmt: skip
    except AccountError as exc:
        if exc.kind == "unauthorized":
            with engine.begin() as conn:
                record_failure(conn, login_name, client)
        raise


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_user(conn: Connection, token: str | None) -> StaffUser | None:
    """The user of a live session token, or None (unknown, expired, disabled)."""
    if not token or len(token) > 200:
        return None
    row = (
        conn.execute(
            sa.text(
                "SELECT u.id, u.login, u.role, s.csrf_token FROM staff_sessions s "
                "JOIN staff_users u ON u.id = s.user_id "
                "WHERE s.token_hash = :h AND s.expires_at > now() AND u.disabled_at IS NULL"
            ),
            {"h": _sha(token)},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return StaffUser(int(row["id"]), row["login"], row["role"], row["csrf_token"])


def logout(conn: Connection, token: str) -> None:
    """End a session."""
    conn.execute(sa.text("DELETE FROM staff_sessions WHERE token_hash = :h"), {"h": _sha(token)})


def csrf_ok(user: StaffUser, sent: str | None) -> bool:
    """True when the CSRF token sent with a form matches the session's."""
    return bool(sent) and hmac.compare_digest(user.csrf.encode(), (sent or "").encode())


def require_admin(user: StaffUser) -> None:
    """Refuse (kind `forbidden`) a moderator asking for an admin action."""
    if not user.is_admin:
        raise AccountError("action réservée aux administrateurs", kind="forbidden")


def staff_audit(
    conn: Connection, who: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Record a staff or contributor action in the audit log (no API token)."""
    conn.execute(
        sa.text(
            "INSERT INTO audit_log (token_name, action, target, detail) "
            "VALUES (:n, :a, :g, CAST(:d AS jsonb))"
        ),
        {"n": who, "a": action, "g": target, "d": json.dumps(detail, default=str)},
    )


def recent_audit(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The latest audit lines, newest first."""
    rows = conn.execute(
        sa.text(
            "SELECT at, token_name, action, target, detail FROM audit_log "
            "ORDER BY at DESC, id DESC LIMIT :n"
        ),
        {"n": limit},
    ).mappings()
    return [dict(r) for r in rows]
