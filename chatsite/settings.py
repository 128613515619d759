"""Settings for chatsite: every knob is an environment variable with a safe dev default."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


DEBUG = env_bool("DJANGO_DEBUG", True)
# The dev default is public on purpose; production sets DJANGO_SECRET_KEY, and without DEBUG the
# app refuses to start on the public one (anyone could forge sessions signed with it).
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or DEV_SECRET_KEY
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set, and DJANGO_DEBUG=0: refusing to start with the public development key. "
        "Set DJANGO_SECRET_KEY to a long random string, e.g. the output of "
        '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
    )
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# DJANGO_HTTPS=1: browsers reach the app over HTTPS only, through a TLS-terminating proxy (nginx, see
# chatsite/nginx.conf.template) that says which scheme the browser used in X-Forwarded-Proto. Plain
# HTTP is redirected, cookies travel only over HTTPS, and HSTS makes the browser never try HTTP again.
HTTPS = env_bool("DJANGO_HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Probes and scrapers call the workers directly, over plain HTTP, past the proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Asking to be preloaded into browsers is the site owner's decision (hard to take back), not a default.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "chat",
]

# No GZipMiddleware: it must never touch text/event-stream.
MIDDLEWARE = [
    # Served through chatsite.asgi, Django's own below run their hooks on the event loop, not a
    # thread hop each (chat/handler.py, chat/middleware.py).
    "django.middleware.security.SecurityMiddleware",
    # servestatic: WhiteNoise's maintained fork with an async middleware. WhiteNoise's is
    # sync-only, which pushes every request (streams too) through a thread under ASGI.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chat.middleware.content_security_policy",
    # Innermost, so that its lockout page gets the headers of every page (CSP, framing, nosniff).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite is tuned for many concurrent answers: WAL lets readers run beside the one writer,
# IMMEDIATE transactions take the write lock up front (no deadlocking lock upgrades), and
# the busy timeout makes a writer wait its turn instead of failing with "database is locked".
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# Requests' sync work (ORM, sessions) runs on this many long-lived threads per process
# (chat/handler.py); each keeps its database connection.
CHAT_SYNC_THREADS = env_int("CHAT_SYNC_THREADS", 4)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    INSTALLED_APPS.append("django.contrib.postgres")  # full-text search of conversations
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    # A SQLite connection is a file handle, and opening one costs more than most queries (Django's
    # SQL functions, the PRAGMAs, the schema): each sync thread keeps its own.
    if "DATABASE_CONN_MAX_AGE" not in os.environ:
        DATABASES["default"]["CONN_MAX_AGE"] = None
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_int("DATABASE_POOL_SIZE", 10) > 0:
    # Each worker borrows from its own pool of at most DATABASE_POOL_SIZE connections (psycopg's,
    # through Django): its CHAT_SYNC_THREADS request threads, the thread that stores answers and
    # the WebSocket consumers' ORM calls each hold one while they work. Without a bound several
    # workers can open more connections than PostgreSQL allows (100 by default); with it they
    # wait their turn, at most DATABASE_POOL_TIMEOUT_S, then get a 503. Pooling replaces
    # CONN_MAX_AGE (Django allows one).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_SIZE", 10),
        "timeout": env_float("DATABASE_POOL_TIMEOUT_S", 10.0),
    }
    # A pooled connection may have died while it waited (a database restart): Django then has the
    # pool test it on the way out (one round trip) instead of failing the request that gets it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# Keys of this app in Redis start with this (channels-redis uses its own "asgi" prefix).
CHAT_REDIS_PREFIX = os.environ.get("CHAT_REDIS_PREFIX", "chat:")
# Per worker; an answer followed here but generated on another worker holds one while it streams.
CHAT_REDIS_MAX_CONNECTIONS = env_int("CHAT_REDIS_MAX_CONNECTIONS", 2000)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes, its attempts in the database, so every worker sees them): after
# CHAT_LOGIN_FAILURES failed logins for one username from one address, that pair is refused for
# CHAT_LOGIN_COOLOFF_MIN minutes, the right password included; a successful login before that
# starts the count again. Attempts during a lockout do not prolong it.
AUTHENTICATION_BACKENDS = [
    "chat.logins.ThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CHAT_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("CHAT_LOGIN_COOLOFF_MIN", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "chat.logins.lockout_response"
AXES_CLIENT_IP_CALLABLE = "chat.logins.client_ip"
# How many proxies in front of daphne append the client's address to X-Forwarded-For (nginx: 1). The
# address throttled is the one the outermost of them saw; 0 (no proxy) takes the connection's, as a
# client could write anything into the header.
CHAT_PROXY_COUNT = env_int("CHAT_PROXY_COUNT", 0)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

# Defence in depth behind DOMPurify: even if model output slipped through, no inline script
# runs and nothing loads from elsewhere (an image URL is a way to leak the conversation).
CHAT_CSP = os.environ.get(
    "CHAT_CSP",
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'",
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chat": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")}},
}

# --- The upstream model -------------------------------------------------------------------
# Unset OPENAI_BASE_URL means the embedded SmolLM2 server that `manage.py runchat` starts.
CHAT_EMBEDDED_HOST = "127.0.0.1"
CHAT_EMBEDDED_PORT = env_int("CHAT_EMBEDDED_PORT", 8089)
CHAT_EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "") or (f"http://{CHAT_EMBEDDED_HOST}:{CHAT_EMBEDDED_PORT}/v1")
CHAT_EMBEDDED = not os.environ.get("OPENAI_BASE_URL")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "sk-no-key-needed")
CHAT_MODEL = os.environ.get("CHAT_MODEL", CHAT_EMBEDDED_MODEL)
CHAT_SYSTEM_PROMPT = os.environ.get("CHAT_SYSTEM_PROMPT", "You are a helpful assistant.")
# The upstream's model list (GET /api/models/, the model picker) is asked again after this long.
CHAT_MODELS_CACHE_S = env_float("CHAT_MODELS_CACHE_S", 60.0)

# --- Limits and timings ---------------------------------------------------------------------
CHAT_MAX_CONTENT_CHARS = env_int("CHAT_MAX_CONTENT_CHARS", 32_000)
CHAT_MAX_TITLE_CHARS = 200
CHAT_MAX_SYSTEM_PROMPT_CHARS = env_int("CHAT_MAX_SYSTEM_PROMPT_CHARS", 4_000)  # a conversation's own
CHAT_MAX_FEEDBACK_CHARS = env_int("CHAT_MAX_FEEDBACK_CHARS", 2_000)  # a comment on an answer
CHAT_CONTEXT_CHARS = env_int("CHAT_CONTEXT_CHARS", 8_000)  # earlier turns sent upstream
CHAT_MAX_TOKENS = env_int("CHAT_MAX_TOKENS", 1024)
CHAT_DETACH_GRACE_S = env_float("CHAT_DETACH_GRACE_S", 5.0)
CHAT_CHECKPOINT_S = env_float("CHAT_CHECKPOINT_S", 1.0)
CHAT_PING_S = env_float("CHAT_PING_S", 15.0)
CHAT_RETRY_MS = env_int("CHAT_RETRY_MS", 2000)
CHAT_UPSTREAM_CONNECT_TIMEOUT_S = env_float("CHAT_UPSTREAM_CONNECT_TIMEOUT_S", 10.0)
# Longest wait for the upstream's first bytes, and for any one read (a big prompt on a CPU is slow).
CHAT_UPSTREAM_READ_TIMEOUT_S = env_float("CHAT_UPSTREAM_READ_TIMEOUT_S", 120.0)
# Once the answer streams, a silence this long ends it as an error, keeping what came.
CHAT_STALL_TIMEOUT_S = env_float("CHAT_STALL_TIMEOUT_S", 30.0)
# Faults before the first token are tried again this often, with exponential back-off and full
# jitter from CHAT_UPSTREAM_RETRY_BASE_S, never waiting more than CHAT_UPSTREAM_RETRY_MAX_S.
CHAT_UPSTREAM_RETRIES = env_int("CHAT_UPSTREAM_RETRIES", 2)
CHAT_UPSTREAM_RETRY_BASE_S = env_float("CHAT_UPSTREAM_RETRY_BASE_S", 0.5)
CHAT_UPSTREAM_RETRY_MAX_S = env_float("CHAT_UPSTREAM_RETRY_MAX_S", 10.0)
# Per user: answers streaming at once (across conversations and workers), messages a minute.
CHAT_USER_CONCURRENCY = env_int("CHAT_USER_CONCURRENCY", 2)
CHAT_USER_RATE_PER_MIN = env_int("CHAT_USER_RATE_PER_MIN", 20)
# Per process: answers streaming at once. `make bench` holds token gaps p99 under 100 ms at 300
# streams in one process; past that a post is better sent to another worker (503 + Retry-After).
CHAT_MAX_STREAMS = env_int("CHAT_MAX_STREAMS", 300)
# On SIGTERM, how long running answers may finish before they are stopped as interrupted.
CHAT_DRAIN_S = env_float("CHAT_DRAIN_S", 20.0)
# An event stream whose client has acknowledged nothing this long, with data waiting, is dropped.
CHAT_SLOW_CLIENT_S = env_float("CHAT_SLOW_CLIENT_S", 60.0)
# How long a finished answer's event log stays in Redis for resume before the database serves it.
CHAT_LOG_RETENTION_S = env_float("CHAT_LOG_RETENTION_S", 60.0)
# A running answer's Redis log expires this long after its last event (its worker vanished).
CHAT_LOG_TTL_S = env_float("CHAT_LOG_TTL_S", 3600.0)
# Bound on a Redis log's length; above CHAT_MAX_TOKENS + 3, so only a runaway answer is trimmed.
CHAT_LOG_MAX_EVENTS = env_int("CHAT_LOG_MAX_EVENTS", 5000)

# --- Several workers (REDIS_URL set) ---------------------------------------------------------
# Each worker refreshes its heartbeat every CHAT_HEARTBEAT_S; one silent for CHAT_WORKER_TTL_S
# is dead and its answers get settled. A follower on another worker notices within about
# CHAT_WORKER_TTL_S + CHAT_HEARTBEAT_S.
CHAT_HEARTBEAT_S = env_float("CHAT_HEARTBEAT_S", 1.5)
CHAT_WORKER_TTL_S = env_float("CHAT_WORKER_TTL_S", 6.0)
# A worker following an answer generated elsewhere holds a lease on it for this long, renewed.
CHAT_LEASE_S = env_float("CHAT_LEASE_S", 6.0)
# How often each worker looks for answers of dead workers that nobody is following.
CHAT_SWEEP_S = env_float("CHAT_SWEEP_S", 5.0)
# WebSocket: typing news relayed at most this often per connection.
CHAT_TYPING_THROTTLE_S = env_float("CHAT_TYPING_THROTTLE_S", 1.0)

# --- Operations (/healthz, /readyz, /metrics) ------------------------------------------------
# A scraper presents it as `Authorization: Bearer <token>`; empty: only a staff session may read /metrics.
CHAT_METRICS_TOKEN = os.environ.get("CHAT_METRICS_TOKEN", "")
# Each of /readyz's checks (database, upstream, Redis) fails past this; they run side by side.
CHAT_READY_TIMEOUT_S = env_float("CHAT_READY_TIMEOUT_S", 2.0)

# --- Retention (`manage.py purge_transcripts`, e.g. from cron) ---------------------------------
# Conversations idle for longer than this many days may be purged; unset keeps them forever.
CHAT_RETENTION_DAYS = env_int("CHAT_RETENTION_DAYS", 0) if os.environ.get("CHAT_RETENTION_DAYS", "").strip() else None
