"""JSON Web Token authentication: keys, remote key sets, verification, minting.

The per-route stage is :mod:`gateway.stages.auth`; this package holds what lives
across requests and routes (one :class:`~gateway.auth.verifier.JwtAuthenticator`
per runtime, shared by every route, with its key sets and verified-token cache).
Kept import-light on purpose: the config models import :mod:`gateway.auth.keys`.
"""
