"""Contributions and moderation in the core: stored first, checked, decided, mailed (real SMTP)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from carteco import accounts, editlinks, mail, proposals
from carteco.errors import CartecoError
from carteco.opening_hours import describe, french_holidays, is_open, parse
from carteco.settings import Settings
from tests.contrib_support import aged_token, creation, smtp_server

SECRET = "secret-de-test-0123456789"


@pytest.fixture
def st(settings: Settings) -> Settings:
    """Settings with a secret and a low per-client rate."""
    return settings.model_copy(update={"secret_key": SECRET, "contrib_per_hour": 5})


@pytest.fixture
def registry(demo_data: sa.Engine) -> sa.Engine:
    """The demo registry, with the contribution tables emptied."""
    with demo_data.begin() as conn:
        conn.execute(sa.text("TRUNCATE proposals, mail_outbox, login_failures CASCADE"))
        conn.execute(sa.text("DELETE FROM structures WHERE source = 'contribution'"))
        conn.execute(sa.text("TRUNCATE staff_users, edit_links, trusted_structures CASCADE"))
    return demo_data


def _status(engine: sa.Engine, pid: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = proposals.get(conn, pid)
    assert row is not None
    return row


def _one_structure(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT id FROM structures WHERE status = 'active' ORDER BY id LIMIT 1")
            ).scalar_one()
        )


def test_create_pending_then_approved_with_mails(registry: sa.Engine, st: Settings) -> None:
    with smtp_server() as (inbox, port):
        mst = st.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                    "moderator_emails": ["moderation@exemple.fr"]})  # fmt: skip
        ans = proposals.submit(registry, mst, creation(SECRET), client="10.0.0.1")
        pid = ans["id"]
        row = _status(registry, pid)
        assert row["status"] == "pending"
        assert row["raw"]["fields"]["name"] == "La Recyclerie du canal"
        assert row["changes"]["phone"] == "01 23 45 67 89"
        with registry.begin() as conn:
            proposals.move(conn, pid, "staff:marie", 2.3580, 48.9365)
            sid = proposals.approve(conn, mst, pid, "staff:marie")
            mail.queue_digest(conn, mst)
        assert mail.deliver(registry, mst)["sent"] == 2
        ack, decision = inbox.to("visiteur@exemple.fr")
        assert f"n° {pid}" in ack["Subject"] and "reçue" in ack["Subject"]
        assert "acceptée" in decision["Subject"]
        assert inbox.to("moderation@exemple.fr") == []  # nothing left pending
    assert sid is not None
    with registry.connect() as conn:
        s = (
            conn.execute(
                sa.text(
                    "SELECT name, status, location_precision, departement_code, extra, "
                    "ST_X(geom) AS lon FROM structures WHERE id = :i"
                ),
                {"i": sid},
            )
            .mappings()
            .one()
        )
        audit = [r["action"] for r in accounts.recent_audit(conn)]
    assert s["status"] == "active" and s["location_precision"] == "manual"
    assert s["departement_code"] == "93" and abs(s["lon"] - 2.358) < 1e-6
    assert s["extra"]["opening_hours"] == "Mo-Fr 09:00-18:00; PH off"
    assert {"move", "approve"} <= set(audit)
    assert _status(registry, pid)["structure_id"] == sid


def test_reject_changes_nothing_and_outbox_keeps_mail(registry: sa.Engine, st: Settings) -> None:
    sid = _one_structure(registry)
    payload = {"kind": "update", "structure_id": sid, "fields": {"name": "Autre nom"},
               "contributor_email": "a@exemple.fr", "form_token": aged_token(SECRET)}  # fmt: skip
    with registry.connect() as conn:
        before = conn.execute(
            sa.text("SELECT md5(string_agg(s::text, '' ORDER BY id)) FROM structures s")
        ).scalar()
    pid = proposals.submit(registry, st, payload, client="10.0.0.2")["id"]
    assert _status(registry, pid)["previous"]["name"] != "Autre nom"
    with registry.begin() as conn:
        with pytest.raises(CartecoError):
            proposals.reject(conn, pid, "staff:marie", "  ")
        proposals.reject(conn, pid, "staff:marie", "nom non justifié")
    with registry.connect() as conn:
        after = conn.execute(
            sa.text("SELECT md5(string_agg(s::text, '' ORDER BY id)) FROM structures s")
        ).scalar()
    assert before == after
    # No SMTP server configured: the mails are logged and kept, never dropped.
    assert mail.deliver(registry, st) == {"sent": 0, "logged": 2, "failed": 0}
    with registry.connect() as conn:
        kept = mail.outbox(conn)
    assert [m["status"] for m in kept] == ["logged", "logged"]
    with registry.begin() as conn, pytest.raises(CartecoError) as err:
        proposals.approve(conn, st, pid, "staff:marie")
    assert err.value.kind == "conflict"


def test_failed_smtp_keeps_mail_to_retry(registry: sa.Engine, st: Settings) -> None:
    from tests.conftest import free_port

    bad = st.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port()})
    with registry.begin() as conn:
        mail.queue_mail(conn, "ack", "x@exemple.fr", "sujet", "corps")
    assert mail.deliver(registry, bad)["failed"] == 1
    with smtp_server() as (inbox, port):
        good = st.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
        assert mail.deliver(registry, good)["sent"] == 1
        assert len(inbox.to("x@exemple.fr")) == 1


def test_antiabuse_honeypot_fill_time_rate(registry: sa.Engine, st: Settings) -> None:
    trap = creation(SECRET)
    trap[proposals.HONEYPOT] = "http://spam.example"
    pid = proposals.submit(registry, st, trap, client="10.0.0.3")["id"]
    assert _status(registry, pid)["status"] == "spam"
    fast = creation(SECRET)
    fast["form_token"] = proposals.form_token(SECRET)
    with pytest.raises(CartecoError):
        proposals.submit(registry, st, fast, client="10.0.0.3")
    forged = creation(SECRET)
    forged["form_token"] = "1000.abcdef"
    with pytest.raises(CartecoError):
        proposals.submit(registry, st, forged, client="10.0.0.3")
    for _ in range(2):
        proposals.submit(registry, st, creation(SECRET), client="10.0.0.3")
    with pytest.raises(CartecoError) as err:
        proposals.submit(registry, st, creation(SECRET), client="10.0.0.3")
    assert err.value.kind == "too_many"
    with registry.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM proposals WHERE client_key = '10.0.0.3'")
        ).scalar()
    assert n == 6  # every submission stored, spam included


def test_invalid_fields_stored_rejected_with_errors(registry: sa.Engine, st: Settings) -> None:
    bad = creation(SECRET, siret="12345678901234", website="javascript:alert(1)", phone="abc")
    with pytest.raises(CartecoError) as err:
        proposals.submit(registry, st, bad, client="10.0.0.4")
    fields = {e["field"] for e in err.value.field_errors()}
    assert {"siret", "website", "phone"} <= fields
    with registry.connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM proposals ORDER BY id DESC LIMIT 1"))
            .mappings()
            .one()
        )
    assert row["status"] == "rejected" and row["raw"]["fields"]["phone"] == "abc"
    assert {e["field"] for e in row["origin_detail"]["errors"]} == fields


def test_receipt_shows_only_its_own_proposal(registry: sa.Engine, st: Settings) -> None:
    a = proposals.submit(registry, st, creation(SECRET), client="10.0.0.5")
    b = proposals.submit(registry, st, creation(SECRET), client="10.0.0.6")
    with registry.connect() as conn:
        assert proposals.public_status(conn, a["id"], a["receipt"])["status"] == "pending"
        with pytest.raises(CartecoError):
            proposals.public_status(conn, b["id"], a["receipt"])


def test_accounts_scrypt_throttle_rotation(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        accounts.add_user(conn, "marie", "un mot de passe long", "moderator")
        stored = conn.execute(sa.text("SELECT password_hash FROM staff_users")).scalar_one()
    assert stored.startswith("scrypt$") and "long" not in stored
    with registry.begin() as conn:
        t1, user = accounts.login(conn, "marie", "un mot de passe long", "10.1.0.1")
        t2, _ = accounts.login(conn, "marie", "un mot de passe long", "10.1.0.1", old_token=t1)
        assert t1 != t2 and accounts.session_user(conn, t1) is None
        assert accounts.session_user(conn, t2) is not None
        with pytest.raises(CartecoError):
            accounts.require_admin(user)
    for _ in range(5):
        with pytest.raises(CartecoError) as err:
            accounts.open_session(registry, "marie", "mauvais", "10.1.0.2")
        assert err.value.kind == "unauthorized"
    with pytest.raises(CartecoError) as err:
        accounts.open_session(registry, "marie", "un mot de passe long", "10.1.0.3")
    assert err.value.kind == "too_many"  # the account is throttled, whatever the address


def test_edit_links_expire_revoke_trust(registry: sa.Engine, st: Settings) -> None:
    sid = _one_structure(registry)
    with registry.begin() as conn:
        token = editlinks.create_link(conn, SECRET, sid, 30, "test")
        assert editlinks.check_link(conn, SECRET, token).structure_id == sid
        with pytest.raises(CartecoError):
            editlinks.check_link(conn, "autre-secret", token)
        tampered = token.split(".")
        with pytest.raises(CartecoError):
            editlinks.check_link(
                conn, SECRET, f"{tampered[0]}.{int(tampered[1]) + 1}.{tampered[2]}"
            )
        old = editlinks.create_link(conn, SECRET, sid, 30, "test")
        conn.execute(sa.text("UPDATE edit_links SET expires_at = now() - interval '1 day'"
                             " WHERE id = :i"), {"i": int(old.split('.')[0])})  # fmt: skip
    with registry.begin() as conn, pytest.raises(CartecoError) as err:
        editlinks.check_link(conn, SECRET, old)
    assert "invalide" in str(err.value) or "expiré" in str(err.value)
    upd = {"fields": {"phone": "09 87 65 43 21"}}
    pid = proposals.submit(registry, st, upd, client="x", structure_id=sid, origin="self_update")[
        "id"
    ]
    assert _status(registry, pid)["status"] == "pending"
    with registry.begin() as conn:
        editlinks.set_trusted(conn, sid, True, "test")
    ans = proposals.submit(registry, st, upd, client="x", structure_id=sid, origin="self_update")
    assert ans["status"] == "approved"
    with registry.begin() as conn:
        assert proposals.current_fields(conn, sid)["phone"] == "09 87 65 43 21"  # type: ignore[index]
        editlinks.revoke_links(conn, sid)
    with registry.begin() as conn, pytest.raises(CartecoError) as err:
        editlinks.check_link(conn, SECRET, token)
    assert "révoqué" in str(err.value)


def test_merge_into_existing(registry: sa.Engine, st: Settings) -> None:
    sid = _one_structure(registry)
    pid = proposals.submit(registry, st, creation(SECRET, website="https://recyclerie.example"),
                           client="10.0.0.7")["id"]  # fmt: skip
    with registry.begin() as conn:
        proposals.merge(conn, st, pid, "staff:marie", sid)
        assert proposals.current_fields(conn, sid)["website"] == "https://recyclerie.example"  # type: ignore[index]
    assert _status(registry, pid)["status"] == "merged"


def test_opening_hours_subset() -> None:
    s = parse("Mo-Fr 09:00-12:00,14:00-18:00; Sa 10:00-12:00; Su off; PH off")
    assert describe(s)[0] == "lundi – vendredi : 9h – 12h, 14h – 18h"
    assert describe(s)[-1] == "jours fériés : fermé"
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    assert is_open(s, datetime(2026, 12, 1, 10, 30, tzinfo=paris))  # a Tuesday
    assert not is_open(s, datetime(2026, 12, 1, 13, 0, tzinfo=paris))
    assert not is_open(s, datetime(2026, 12, 25, 10, 0, tzinfo=paris))  # Christmas, a Friday
    assert not is_open(s, datetime(2026, 12, 6, 11, 0, tzinfo=paris))  # Sunday
    night = parse("Fr 22:00-02:00")
    assert is_open(night, datetime(2026, 12, 5, 1, 0, tzinfo=paris))  # Saturday 1 a.m.
    assert datetime(2027, 3, 29).date() in french_holidays(2027)  # Easter Monday 2027
    with pytest.raises(ValueError):
        parse("lundi 9h-12h")
    assert time.time() > 0
