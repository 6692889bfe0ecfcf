"""Server plumbing below every handler: the listener and its guard, request bodies,
middlewares, dispatch, admin endpoints and the app keys they share.

- `server`: the runner and server each listener runs on, and the connection cap;
- `connections`: each connection's handler: header blocks bounded in bytes and time, refusals;
- `feeding`: its base: aiohttp's parser fed one request part at a time (`framing` finds them);
- `lingering`, `client_waits`, `refusals`: what a refused connection does, what each
  connection waits on its client for, what the listener answers by itself;
- `aiohttp_server`: every aiohttp internal the above rely on, behind one door;
- `bodies`, `middlewares`, `dispatch`, `admin`, `keys`: what handlers share.
"""
