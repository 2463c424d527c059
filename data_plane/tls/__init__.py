"""TLS for the worker: sealed private keys in the snapshot (:mod:`.seal`), the server side with SNI
certificate selection and client certificates (:mod:`.server`), and TLS to targets (:mod:`.client`).

Everything here runs at snapshot-compile time or in the handshake, never per request: the request
path sees only a per-connection flag (the connection is TLS) and, for mTLS APIs, the client
certificate's identity computed once per connection.
"""
