"""Release keys: the keys the server trusts, their revocation, and the signed key statements."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from fleet.api.deps import OPERATOR, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry, Created
from fleet.key_statements import (
    keyset_counts,
    nodes_behind,
    nodes_trusting,
    store_statement,
    summary,
)
from fleet.models import KeyStatement, SigningKey, aware
from fleet.releases import revoke_key, trust_key
from fleet.schemas import KeyIn, KeyNodeOut, KeyOut, KeyStatementIn, KeyStatementOut
from ota.keys import parse_statement

router = APIRouter(tags=["updates"])


def _key_out(row: SigningKey, counts: dict[int | None, int] | None = None) -> KeyOut:
    """A key; with `counts` (active nodes by reported key set), how many still trust it."""
    out = KeyOut(key_id=row.key_id, public_key=row.public_key, name=row.name,
                 added_at=aware(row.added_at),
                 revoked_at=aware(row.revoked_at),
                 introduced_by_serial=row.introduced_by_serial,
                 revoked_by_serial=row.revoked_by_serial)
    if row.revoked_at is None or counts is None:
        return out
    if row.revoked_by_serial is None:
        out.nodes_trusting = sum(counts.values())
        out.note = ("revoked on the server only: every node still trusts it until a signed "
                    f"revocation reaches it (`lamplighter release revoke {row.key_id} --key "
                    "<another trusted key> --serial <next> --out <file> --upload`)")
    else:
        out.nodes_trusting = nodes_behind(counts, row.revoked_by_serial)
        out.note = (f"revoked by statement {row.revoked_by_serial}: nodes trust it until they "
                    "apply that statement at a check-in")
    return out


def _statement_out(row: KeyStatement, counts: dict[int | None, int]) -> KeyStatementOut:
    kind, document = parse_statement(json.loads(row.envelope)["statement"])
    return KeyStatementOut(serial=row.serial, kind=row.kind, key_id=row.key_id,
                           summary=summary(kind, document), created_at=aware(row.created_at),
                           created_by=row.created_by, nodes_behind=nodes_behind(counts,
                                                                                row.serial),
                           envelope=row.envelope)


@router.post("/keys", response_model=KeyOut, status_code=201,
             responses={409: {"description": "key was revoked"}, 422: {"description": "bad key"}})
def add_key(body: KeyIn, audit: Annotated[AuditEntry, audited(
                "release_key.trust", "release_keys", OPERATOR,
                Created(SigningKey, "release_key:{key_id}"))],
            session: SessionDep) -> KeyOut:
    """Trust a release public key. The server never needs the private key."""
    audit.detail["name"] = body.name
    row = _key_out(trust_key(session, body.public_key, body.name))
    audit.target = f"release_key:{row.key_id}"  # a key trusted already: nothing was created
    return row


@router.get("/keys", response_model=list[KeyOut])
def list_keys(_: ReaderDep, session: SessionDep) -> list[KeyOut]:
    """The release keys, revoked ones included (with when, by which statement, and how many
    active nodes still trust them)."""
    counts = keyset_counts(session)
    return [_key_out(r, counts) for r in session.execute(select(SigningKey)
                                                         .order_by(SigningKey.id)).scalars()]


@router.post("/keys/{key_id}/revoke", response_model=KeyOut,
             responses={404: {"description": "no such key"}})
def revoke(key_id: str, audit: Annotated[AuditEntry, audited(
               "release_key.revoke", "release_key:{key_id}", OPERATOR)],
           session: SessionDep) -> KeyOut:
    """Stop trusting a key on the server: bundles it signed are refused from now on and the
    active rollouts of releases it signed pause. Nodes learn of it only from a signed
    revocation statement (POST /api/v1/keys/statements)."""
    row = revoke_key(session, key_id)
    return _key_out(row, keyset_counts(session))


@router.get("/keys/{key_id}/nodes", response_model=list[KeyNodeOut],
            responses={404: {"description": "no such key"},
                       409: {"description": "the key is not revoked"}})
def key_nodes(key_id: str, _: ReaderDep, session: SessionDep,
              limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[KeyNodeOut]:
    """The active nodes that still trust a revoked key, longest behind first."""
    return [KeyNodeOut(device_id=d.uid, pole_id=d.pole_id, keyset=d.keyset_serial,
                       keyset_error=d.keyset_error, last_seen=aware(d.last_seen))
            for d in nodes_trusting(session, key_id, limit)]


@router.post("/keys/statements", response_model=KeyStatementOut, status_code=201,
             responses={409: {"description": "not the next serial, or its key is known"},
                        422: {"description": "envelope, signer, signature or document "
                                             "refused; or no usable key would be left"}})
def add_statement(body: KeyStatementIn, audit: Annotated[AuditEntry, audited(
                      "key_statement.publish", "key_statements", OPERATOR,
                      Created(KeyStatement, "key_statement:{serial}"))],
                  session: SessionDep) -> KeyStatementOut:
    """Publish a signed rotation or revocation (the file `lamplighter release rotate/revoke`
    writes, sent as the request body). It must be the next serial of the chain; the server
    applies it to its keys at once and nodes receive it at their next check-in."""
    envelope = json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":"))
    row = store_statement(session, envelope, audit.actor)
    return _statement_out(row, keyset_counts(session))


@router.get("/keys/statements", response_model=list[KeyStatementOut])
def list_statements(_: ReaderDep, session: SessionDep) -> list[KeyStatementOut]:
    """The statement chain in serial order, with how many active nodes have not applied each."""
    counts = keyset_counts(session)
    rows = session.execute(select(KeyStatement).order_by(KeyStatement.serial)).scalars()
    return [_statement_out(r, counts) for r in rows]
