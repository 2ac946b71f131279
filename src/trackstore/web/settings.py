"""What a running app is told: the database, the token and the limits.

Settings travel to uvicorn's worker processes through environment
variables (a worker imports the app factory by name and cannot be handed
Python objects), so ``Settings.from_env`` is the one way a worker learns
them and ``Settings.to_env`` the one way ``serve`` passes them on.
"""
import dataclasses
import os


TOKEN_ENV = 'TRACKSTORE_TOKEN'
PREFIX = 'TRACKSTORE_WEB_'

#: 12 hours back and 5 minutes ahead: the search product's limits for a
#: session's ``created_at``.
MAX_PAST = 12 * 3600
MAX_FUTURE = 5 * 60

#: Bodies above this many bytes get 413. A POST /hits of 16 MiB holds
#: about 50,000 hits; larger inputs belong to ``trackstore ingest``.
MAX_BODY = 16 * 1024 * 1024


@dataclasses.dataclass
class Settings:
    """The settings of one app (all workers of a server share them)."""

    db: str | None = None
    token: str | None = None
    max_body: int = MAX_BODY
    max_past: int = MAX_PAST
    max_future: int = MAX_FUTURE
    session_timeout: float = 30 * 60.0

    def to_env(self):
        """The settings as environment variables for worker processes."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and field.name != 'token':
                env[PREFIX + field.name.upper()] = str(value)
        if self.token:
            env[TOKEN_ENV] = self.token
        return env

    @classmethod
    def from_env(cls, environ=None):
        """Settings from the environment (what ``to_env`` wrote; the
        token also from ``TRACKSTORE_TOKEN`` as users set it)."""
        environ = os.environ if environ is None else environ
        kw = {}
        for field in dataclasses.fields(cls):
            value = environ.get(PREFIX + field.name.upper())
            if value is None or field.name == 'token':
                continue
            kw[field.name] = _convert(field, value)
        kw['token'] = environ.get(TOKEN_ENV) or None
        return cls(**kw)


def _convert(field, value):
    if field.type in (int, 'int'):
        return int(value)
    if field.type in (float, 'float'):
        return float(value)
    return value
