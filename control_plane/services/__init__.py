"""Business rules.  Keyword-only functions over a :class:`~sqlalchemy.orm.Session`; they raise
:mod:`control_plane.errors` and never commit (the caller owns the transaction).

Every config write calls :func:`~control_plane.services.revision.bump_revision` *first*: the
``UPDATE config_state`` takes the row lock (PostgreSQL) or the write lock (SQLite) before the
duplicate checks run, so concurrent writers — in this process or in another replica — are
serialised and a check-then-insert cannot race.
"""
