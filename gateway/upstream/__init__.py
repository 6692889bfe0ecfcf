"""The platform client: the call with its retries, breaker and clock skew, the transports
under it, and the accessTokens, trade waits and stores built on it."""
