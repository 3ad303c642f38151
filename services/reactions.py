"""Reactions: a member adds or removes an emoji on a message; every member hears of it (ReactionChanged, with the
message's counts after the change)."""

from __future__ import annotations

import unicodedata
import uuid

from services.auth import Actor, require_user
from services.errors import BadRequest
from services.message_views import changed_message
from services.runtime import Runtime
from services.validation import valid_text
from services.views import MessageView

MAX_EMOJI_LENGTH = 16


def valid_emoji(emoji: str) -> str:
    """An emoji as reactions take it: 1 to 16 characters, no whitespace or control characters, and at least one that
    is not an ASCII letter or digit (so "👍", "❤️", "+1" pass and "ok" does not). Not checked against Unicode's emoji
    list: clients render what they can."""
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= MAX_EMOJI_LENGTH:
        raise BadRequest(f"emoji: expected 1 to {MAX_EMOJI_LENGTH} characters")
    valid_text(emoji, "emoji")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in emoji):
        raise BadRequest("emoji: whitespace and control characters are not allowed")
    if all(c.isascii() and c.isalnum() for c in emoji):
        raise BadRequest("emoji: expected a symbol, not only ASCII letters and digits")
    return emoji


async def set_reaction(rt: Runtime, *, actor: Actor, message_id: uuid.UUID, emoji: str, add: bool) -> MessageView:
    """Add (`add`) or remove the user's reaction. Adding one the user has, or removing one they have not, changes
    nothing and is not heard of. A deleted message takes no reactions; a message takes at most
    `MAX_REACTIONS_PER_MESSAGE` different emoji (BAD_REQUEST for a further one)."""
    user_id = require_user(actor)
    valid_emoji(emoji)
    limit = rt.settings.max_reactions_per_message
    changed = await rt.store.set_reaction(message_id=message_id, user_id=user_id, emoji=emoji, add=add, max_emoji=limit)
    return await changed_message(rt, changed, message_id=message_id, viewer=user_id, max_emoji=limit)
