"""The use cases, each written once, shared by the GraphQL and legacy adapters.

Every function takes the `Runtime` and keyword arguments, authorizes the actor itself, commits, and only
then publishes. Nothing here knows about Strawberry or Starlette.
"""
