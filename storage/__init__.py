"""The storage seam (`storage.base.Store`) and its backends, one per database: `open_store` picks by URL."""

from models import Database
from storage.base import NewChat, Publish, Recorded, Refusal, Store, direct_key


def open_store(db: Database, publish: Publish) -> Store:
    """The backend of `db`'s database. It publishes each recorded event with `publish` once committed."""
    if db.is_sqlite:
        from storage.sqlite import SqliteStore

        return SqliteStore(db, publish)
    from storage.postgres import PostgresStore

    return PostgresStore(db, publish)


__all__ = ["NewChat", "Recorded", "Refusal", "Store", "direct_key", "open_store"]
