"""The GraphQL adapter: Query, Mutation, Subscription, and the Strawberry app mounted at /graphql."""

from resolvers.app import build_schema, graphql_app

__all__ = ["build_schema", "graphql_app"]
