"""The HTTP surface shared by the listeners: middlewares, connections, app state keys."""
