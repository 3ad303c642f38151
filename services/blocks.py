"""Blocks between users: a user blocks another for themselves, or a service mirrors a block the main app keeps.

While A blocks B: B's messages and typing do not reach A — not live, not on resume, not in history, unread counts
or `lastMessage` — and B cannot start a 1:1 chat with A or add A to a group (refused exactly as for an unknown
user). A sees B's messages again once they unblock, history included. Nothing tells B: blocking is A's own view.

Across processes: each connection holds its user's block list, read when it opens (`Store.stream_start`); a
change is the durable event `BlockChanged`, routed to the blocker's own user channel, so every process that
holds one of their connections applies it (realtime.hub), and one that missed it on the bus reads it from the log.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from models.tables import UserBlock
from services.auth import Actor, require_user
from services.errors import BadRequest, Forbidden, NotFound
from services.runtime import Runtime


def _blocker(actor: Actor, blocker_id: uuid.UUID | None) -> uuid.UUID:
    """Whose block list: a user's own; a service names it (`blocker_id`)."""
    if actor.is_service:
        if blocker_id is None:
            raise BadRequest("blockerId: required with a service token (whose block list to change)")
        return blocker_id
    user_id = require_user(actor)
    if blocker_id is not None and blocker_id != user_id:
        raise Forbidden("blockerId: a user token changes its own user's block list only")
    return user_id


async def set_block(
    rt: Runtime, *, actor: Actor, user_id: uuid.UUID, blocked: bool, blocker_id: uuid.UUID | None = None
) -> bool:
    """Block (`blocked`) or unblock `user_id`; idempotent. Any id is taken, known or not: the answer reveals nothing
    about it."""
    blocker = _blocker(actor, blocker_id)
    if blocker == user_id:
        raise BadRequest("userId: you cannot block yourself")
    outcome = await rt.store.set_block(blocker_id=blocker, blocked_id=user_id, blocked=blocked)
    if outcome.refused is not None:
        raise NotFound("the blocking user is not provisioned")
    return True


async def blocked_users(rt: Runtime, *, actor: Actor) -> list[uuid.UUID]:
    """The users the caller blocks, in id order."""
    user_id = require_user(actor)
    async with rt.db.read() as session:
        rows = await session.execute(
            select(UserBlock.blocked_id).where(UserBlock.blocker_id == user_id).order_by(UserBlock.blocked_id)
        )
        return list(rows.scalars())
