"""HTTP/1.1 on both sides of the proxy: the client protocol, the exchange, the upstream connections.

``protocol`` parses client bytes (httptools) and owns the connection's state; ``admission`` decides
whether a parsed request goes upstream (path checks, route, authentication, body limits, plan
policy); ``headers`` rewrites request and response heads; ``exchange`` runs one admitted request
against an upstream (connect, stream, retry, timeouts, upgrade); ``upstream`` holds the pooled
target connections; ``responses`` the gateway's own response bytes.
"""
