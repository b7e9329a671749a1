"""The rules of a check-in, written once as SQL expressions that both check-in paths evaluate."""

# The full path (fleet/checkin.py) selects `desired_facts` and `checkin_facts` for one node,
# its stored columns and its report bound as parameters, and acts on each fact; the quick path
# (fleet/checkin_quick.py) selects the same facts for a batch of nodes joined to their device
# rows and settles only the rows where `nothing_else_to_deliver` holds: check-ins that write
# the node's state and nonce and nothing else, answered with the interval alone. Every
# expression here compiles for PostgreSQL and for SQLite (the full path runs on both).

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FunctionElement,
    Integer,
    and_,
    case,
    exists,
    func,
    literal_column,
    not_,
    select,
)
from sqlalchemy.ext.compiler import compiles

from fleet.commands import deliverable
from fleet.models import Command, ConfigProfile, KeyStatement, Rollout


def _profile(scope: str, target: ColumnElement[Any] | Any) -> Any:
    return and_(ConfigProfile.scope == scope, ConfigProfile.target == target)


def node_profiles(group_name: ColumnElement[str] | str,
                  uid: ColumnElement[str] | str) -> ColumnElement[bool]:
    """The ConfigProfile rows that make a node's desired configuration: its group's, its own."""
    return _profile("group", group_name) | _profile("device", uid)


def desired_config_version(group_name: ColumnElement[str] | str,
                           uid: ColumnElement[str] | str) -> ColumnElement[int]:
    """The node's desired configuration version: the sum of its group's and its own profile
    versions (0 without either); both only grow, so any change to either raises it."""
    return select(func.coalesce(func.sum(ConfigProfile.version), 0)) \
        .where(node_profiles(group_name, uid)).scalar_subquery()


def profile_body(scope: str, target: ColumnElement[str] | str) -> ColumnElement[Any]:
    """The stored document of one profile (NULL without one)."""
    return select(ConfigProfile.body).where(_profile(scope, target)).scalar_subquery()


class _TopLevelKey(FunctionElement[Any]):
    """A top-level key of a JSON document, compiled for PostgreSQL (`json`) and SQLite."""

    inherit_cache = True

    def __init__(self, document: ColumnElement[Any], key: str) -> None:
        if not re.fullmatch(r"[a-z_]+", key):
            raise ValueError(f"not a plain key: {key!r}")
        super().__init__(document, literal_column(f"'{key}'"), literal_column(f"'$.\"{key}\"'"))


class json_has_key(_TopLevelKey):  # noqa: N801 - an SQL function
    """Whether the document holds the key (whatever its value, null included)."""

    type = Boolean()
    name = "json_has_key"
    inherit_cache = True


class json_whole_number(_TopLevelKey):  # noqa: N801 - an SQL function
    """The key's value when it is a whole number of 1 to 9 digits (not a boolean, not a
    fraction, not a string), else NULL."""

    type = Integer()
    name = "json_whole_number"
    inherit_cache = True


@compiles(json_has_key, "postgresql")
def _pg_has_key(element: json_has_key, compiler: Any, **kw: Any) -> str:
    document, key, _ = (compiler.process(c, **kw) for c in element.clauses)
    return f"({document} -> {key}) IS NOT NULL"


@compiles(json_has_key, "sqlite")
def _sqlite_has_key(element: json_has_key, compiler: Any, **kw: Any) -> str:
    document, _, path = (compiler.process(c, **kw) for c in element.clauses)
    return f"json_type({document}, {path}) IS NOT NULL"


@compiles(json_whole_number, "postgresql")
def _pg_whole_number(element: json_whole_number, compiler: Any, **kw: Any) -> str:
    document, key, _ = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CASE WHEN json_typeof({document} -> {key}) = 'number' AND "
            f"({document} ->> {key}) ~ '^[1-9][0-9]{{0,8}}$' "
            f"THEN CAST({document} ->> {key} AS INTEGER) END")


@compiles(json_whole_number, "sqlite")
def _sqlite_whole_number(element: json_whole_number, compiler: Any, **kw: Any) -> str:
    document, _, path = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CASE WHEN json_type({document}, {path}) = 'integer' AND "
            f"json_extract({document}, {path}) BETWEEN 1 AND 999999999 "
            f"THEN json_extract({document}, {path}) END")


def desired_checkin_interval_s(group_name: ColumnElement[str] | str,
                               uid: ColumnElement[str] | str,
                               default: ColumnElement[int] | int) -> ColumnElement[int]:
    """The interval a reply gives: the top-level `checkin_interval_s` of the node's desired
    configuration, taken as the deep merge takes it (from the node's own profile if it holds
    the key, else from its group's), when that is a whole number of seconds; else the server's
    `default`. (Profiles are validated when stored, but one stored before the checks may hold
    anything.)"""
    key = "checkin_interval_s"
    holder = select(json_whole_number(ConfigProfile.body, key)) \
        .where(node_profiles(group_name, uid), json_has_key(ConfigProfile.body, key)) \
        .order_by(case((ConfigProfile.scope == "device", 0), else_=1)).limit(1)
    return func.coalesce(holder.scalar_subquery(), default)


def config_behind_checkins(stored: ColumnElement[int], reported_version: ColumnElement[int],
                           desired_version: ColumnElement[int]) -> ColumnElement[int]:
    """The drift counter after a check-in: one more while the node reports a version below its
    desired one, else 0."""
    return case((reported_version < desired_version, stored + 1), else_=0)


def sends_config(reported_version: ColumnElement[int], refused_version: ColumnElement[Any],
                 desired_version: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether the reply carries the desired configuration: the node is behind it and has not
    refused that very version (it would refuse it again; a new PUT makes a new version)."""
    return and_(reported_version < desired_version,
                refused_version.is_distinct_from(desired_version))


def has_deliverable_command(device_id: ColumnElement[int] | int,
                            now: ColumnElement[datetime] | datetime) -> ColumnElement[bool]:
    """Whether a command waits for the node (fleet.commands.deliverable)."""
    return exists().where(Command.device_id == device_id, deliverable(now))


def rollout_needs_full_path() -> ColumnElement[bool]:
    """Whether a rollout is active: the check-in may join, offer or sweep it
    (fleet.rollouts.assignment_for), which only the full path does."""
    return exists().where(Rollout.state == "active")


def after_keyset(keyset: ColumnElement[Any]) -> ColumnElement[bool]:
    """The key statements a node that reported key set `keyset` lacks."""
    return KeyStatement.serial > keyset


def statement_after(keyset: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether a key statement follows the key set the node reported (none when it reported
    none: older firmware is not held back by the chain)."""
    return and_(keyset.is_not(None), exists().where(after_keyset(keyset)))


def keyset_refusal_changes(sets_error: ColumnElement[bool], reported: ColumnElement[Any],
                           stored: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether the check-in changes the node's key-set refusal (an event is recorded)."""
    return and_(sets_error, reported.is_distinct_from(stored))


def config_refusal_changes(reported: ColumnElement[Any],
                           stored: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether the check-in reports a configuration refusal other than the stored one (an
    event is recorded; a refusal that no longer stands is cleared without one)."""
    return and_(reported.is_not(None), reported.is_distinct_from(stored))


@dataclass(frozen=True)
class CheckinInputs:
    """What the rules read, as SQL expressions: the node's stored columns and its report."""

    device_id: ColumnElement[int]
    config_behind_checkins: ColumnElement[int]
    stored_keyset_error: ColumnElement[Any]
    stored_config_error: ColumnElement[Any]
    config_version: ColumnElement[int]  # reported
    config_refused_version: ColumnElement[Any]  # reported (NULL: none stands)
    config_error: ColumnElement[Any]  # reported
    keyset: ColumnElement[Any]  # reported (NULL: not reported)
    sets_keyset_error: ColumnElement[bool]  # the report states the key-set refusal
    keyset_error: ColumnElement[Any]  # reported (NULL: none stands)


def desired_facts(group_name: ColumnElement[str] | str, uid: ColumnElement[str] | str,
                  default_interval: ColumnElement[int] | int) -> dict[str, ColumnElement[Any]]:
    """The node's desired configuration version and check-in interval, by name."""
    return {"desired_version": desired_config_version(group_name, uid),
            "interval_s": desired_checkin_interval_s(group_name, uid, default_interval)}


def checkin_facts(node: CheckinInputs, now: ColumnElement[datetime] | datetime,
                  desired_version: ColumnElement[int]) -> dict[str, ColumnElement[Any]]:
    """Everything else a check-in decides, by name, for one node whose desired version is
    `desired_version` (a column of a select of `desired_facts`, so it is computed once)."""
    return {
        "behind_checkins": config_behind_checkins(node.config_behind_checkins,
                                                  node.config_version, desired_version),
        "sends_config": sends_config(node.config_version, node.config_refused_version,
                                     desired_version),
        "has_command": has_deliverable_command(node.device_id, now),
        "rollout_active": rollout_needs_full_path(),
        "statement_after": statement_after(node.keyset),
        "keyset_event": keyset_refusal_changes(node.sets_keyset_error, node.keyset_error,
                                               node.stored_keyset_error),
        "config_event": config_refusal_changes(node.config_error, node.stored_config_error),
    }


# The facts that give a check-in more to do than record the node's state and its nonce.
NEEDS_FULL_PATH = ("sends_config", "has_command", "rollout_active", "statement_after",
                   "keyset_event", "config_event")


def nothing_else_to_deliver(facts: dict[str, ColumnElement[Any]]) -> ColumnElement[bool]:
    """Whether the check-in only records the node's state: no configuration, command, update
    or key statement to send, no event to record (the quick path settles exactly these)."""
    return and_(*(not_(facts[name]) for name in NEEDS_FULL_PATH))
