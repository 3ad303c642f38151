"""Persistence: the tables and the engine/session factory."""

from models.db import Database
from models.tables import Base, Chat, EventLog, Member, Message, Reaction, User, Writer, utcnow

__all__ = ["Base", "Chat", "Database", "EventLog", "Member", "Message", "Reaction", "User", "Writer", "utcnow"]
