"""Persistence: the tables and the engine/session factory."""

from models.db import Database
from models.tables import Base, Chat, EventLog, LogState, Member, Message, User, utcnow

__all__ = ["Base", "Chat", "Database", "EventLog", "LogState", "Member", "Message", "User", "utcnow"]
