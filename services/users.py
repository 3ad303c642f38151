"""Users: provisioned by the main app with a service token; this service keeps id, email, image, last seen."""

from __future__ import annotations

import uuid
from datetime import datetime

from models import User, utcnow
from services.auth import Actor, require_service, require_user
from services.errors import BadRequest, NotFound
from services.runtime import Runtime
from services.validation import valid_text
from services.views import UserView

MAX_EMAIL_LENGTH = 320  # RFC 5321's limit on a mailbox
MAX_IMAGE_URL_LENGTH = 2048  # what browsers reliably handle


def user_view(rt: Runtime, user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        image_url=user.image_url,
        last_seen=user.last_seen,
        is_online=rt.is_online(user.id),
    )


class _Keep:
    """Sentinel: leave the stored value as it is."""


KEEP = _Keep()


async def upsert_user(
    rt: Runtime,
    *,
    actor: Actor,
    email: str,
    user_id: uuid.UUID | None = None,
    image_url: str | None | _Keep = KEEP,
) -> UserView:
    """Create a user, or update one: `image_url` left out keeps the stored image, `None` clears it."""
    require_service(actor)
    email = email.strip()
    if not email or len(email) > MAX_EMAIL_LENGTH or "@" not in email:
        raise BadRequest("email: expected an address of at most 320 characters")
    if isinstance(image_url, str) and len(image_url) > MAX_IMAGE_URL_LENGTH:
        raise BadRequest("image_url: expected at most 2048 characters")
    valid_text(email, "email")
    if isinstance(image_url, str):
        valid_text(image_url, "image_url")
    user = await rt.store.upsert_user(
        user_id=user_id or uuid.uuid4(),
        email=email,
        image_url=None if isinstance(image_url, _Keep) else image_url,
        keep_image=isinstance(image_url, _Keep),
    )
    return user_view(rt, user)


async def get_me(rt: Runtime, *, actor: Actor) -> UserView:
    user_id = require_user(actor)
    async with rt.db.read() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise NotFound("this user is not provisioned")
    return user_view(rt, user)


async def touch_last_seen(rt: Runtime, *, user_id: uuid.UUID, when: datetime | None = None) -> None:
    """Record when the user was last connected (every disconnect)."""
    await rt.store.touch_last_seen(user_id=user_id, when=when or utcnow())
