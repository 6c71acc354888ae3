"""Settings for the Little Lemon sample backend.

Everything that differs between a laptop, CI and a deployment comes from the
environment, with defaults that make ``make demo`` work on a fresh checkout:

================================  ==============================================
``DJANGO_SECRET_KEY``             session/CSRF signing; a dev-only default
``DJANGO_DEBUG``                  ``1``/``true`` to enable; off by default
``DJANGO_ALLOWED_HOSTS``          comma list; default 127.0.0.1, localhost, [::1]
``DATABASE_URL``                  dj-database-url syntax; default SQLite file
                                  ``backends/sample_django/db.sqlite3``
``JWT_PRIVATE_KEY_FILE``          PEM RSA private key; default ``<repo>/keys/jwt.key``
``JWT_PUBLIC_KEY_FILE``           PEM public key; default ``<repo>/keys/jwt.pub``
``JWT_ISSUER``                    ``iss`` claim; default ``little-lemon``
                                  (empty string: no ``iss`` claim)
``INSTANCE_NAME``                 value of the ``X-Served-By`` response header;
                                  default ``<hostname>:<pid>``
``THROTTLE_ANON_RATE``            anonymous reads per client IP, per process;
                                  default ``600/minute``; ``off`` disables
``THROTTLE_USER_RATE``            writes per user, per process; default
                                  ``1200/minute``; ``off`` disables
``THROTTLE_NUM_PROXIES``          proxies in front of the backend whose
                                  ``X-Forwarded-For`` names the client; default
                                  ``1`` (the gateway)
================================  ==============================================

The JWT keys are read once, here. A missing key does not stop Django from
starting (``generate_jwt_keys`` itself needs these settings to run); the
``accounts`` system check reports it instead.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BASE_DIR.parent.parent


def _env_bool(name: str, *, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, *, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_rate(name: str, *, default: str) -> str | None:
    """A DRF throttle rate (``<n>/<second|minute|hour|day>``); ``off`` is no limit."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.lower() in {"off", "none"}:
        return None
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period[:1] in {"s", "m", "h", "d"}):
        raise ImproperlyConfigured(f"{name}={value!r}: expected e.g. 600/minute, 20/second or off")
    return value


def _env_count(name: str, *, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number >= 0")
    return int(value)


def _read_pem(path: Path) -> str | None:
    """Return the PEM text at ``path``, or None while the key does not exist yet."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-little-lemon-dev-only-do-not-deploy"
)
DEBUG = _env_bool("DJANGO_DEBUG", default=False)
# The gateway preserves the client's Host header (127.0.0.1:8080); Django
# compares hosts without their port, so loopback names are enough here.
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# Empty means "<hostname>:<pid>", resolved by the middleware inside each worker.
INSTANCE_NAME = os.environ.get("INSTANCE_NAME", "")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "djoser",
    "accounts",
    "menu",
]

MIDDLEWARE = [
    # First, so that every response -- errors included -- names its instance.
    "littlelemon.served_by.ServedByMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # ETag (an MD5 of the body) on GET responses, and 304 for a matching
    # If-None-Match: what lets the gateway's cache revalidate instead of
    # refetching. Where Django's middleware-ordering notes put it: outside any
    # middleware that could still change the body (here: after Security, before
    # Common); inside ServedBy, so a 304 names its instance too. The hash covers
    # the body only, so both instances give the same ETag for the same content.
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "littlelemon.urls"
WSGI_APPLICATION = "littlelemon.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Two gunicorn instances share one SQLite file. WAL lets readers run while
    # one process writes; IMMEDIATE transactions take the write lock up front so
    # concurrent writers queue on the busy timeout instead of failing with
    # "database is locked" when a read transaction tries to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        **DATABASES["default"].get("OPTIONS", {}),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# Only DRF's throttles use a cache. LocMemCache lives in one process's memory:
# every gunicorn worker of every instance counts on its own, so the backend's
# limits are a per-process backstop, never the exact ones (those are the
# gateway's). Room for a few thousand client histories before culling.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "little-lemon-throttle",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    }
}

REST_FRAMEWORK = {
    # Stateless JWT only: the gateway in front verifies the same tokens.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    # Closed by default; each view opens what it means to open.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "menu.pagination.PerPagePagination",
    # A backstop for when the backend is reached without the gateway; the menu
    # views pick the throttle per action (menu/throttling.py). Generous: the
    # gateway's limits (config/gateway.yaml: 60/minute anonymous, 600/minute per
    # user, 10 writes/minute) must always bite first.
    "DEFAULT_THROTTLE_RATES": {
        "anon": _env_rate("THROTTLE_ANON_RATE", default="600/minute"),
        "user": _env_rate("THROTTLE_USER_RATE", default="1200/minute"),
    },
    # Behind the gateway every request comes from the gateway's address. The
    # gateway sends "X-Forwarded-For: <client>" (plus one entry per trusted
    # proxy in front of it, if server.trusted_proxies lists any: then count
    # those too), and DRF keys on the entry NUM_PROXIES from the right.
    # 0: key on the TCP peer only (a backend that clients reach directly).
    "NUM_PROXIES": _env_count("THROTTLE_NUM_PROXIES", default=1),
    "DEFAULT_RENDERER_CLASSES": (
        ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
        if DEBUG
        else ["rest_framework.renderers.JSONRenderer"]
    ),
}

JWT_PRIVATE_KEY_FILE = Path(
    os.environ.get("JWT_PRIVATE_KEY_FILE", REPO_ROOT / "keys" / "jwt.key")
).resolve()
JWT_PUBLIC_KEY_FILE = Path(
    os.environ.get("JWT_PUBLIC_KEY_FILE", REPO_ROOT / "keys" / "jwt.pub")
).resolve()

SIMPLE_JWT = {
    "ALGORITHM": "RS256",
    "SIGNING_KEY": _read_pem(JWT_PRIVATE_KEY_FILE),
    "VERIFYING_KEY": _read_pem(JWT_PUBLIC_KEY_FILE) or "",
    "ISSUER": os.environ.get("JWT_ISSUER", "little-lemon") or None,
    # No audience by default: a verifier that expects none rejects tokens carrying one.
    "AUDIENCE": None,
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
    "TOKEN_TYPE_CLAIM": "token_type",
    # A login must not write to the shared SQLite file.
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_OBTAIN_SERIALIZER": "accounts.tokens.GroupsTokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.tokens.GroupsTokenRefreshSerializer",
}

DJOSER = {
    "LOGIN_FIELD": "username",
    "HIDE_USERS": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
