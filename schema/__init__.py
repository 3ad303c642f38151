"""GraphQL types and converters from service results (the schema object is assembled in `resolvers`)."""
