"""Request-side building blocks of the middleware (extractors)."""
