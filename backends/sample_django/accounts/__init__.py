"""Accounts: the JWTs this backend issues and the RSA keys that sign them.

Users themselves are Django's ``auth.User``, served by djoser under ``/auth/``.
"""
