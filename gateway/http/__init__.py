"""Server plumbing below every handler: the listener and its guard, request bodies,
middlewares, dispatch, admin endpoints and the app keys they share."""
