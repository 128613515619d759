"""Shared fixtures: the scripted upstream, the app under daphne (alone or several behind nginx), users and
logged-in clients."""

import os

import pytest
from django.test import AsyncClient
from hypothesis import HealthCheck, settings

from chat import generation, limits, llm
from tests.cluster import Cluster
from tests.live import PASSWORD, ApiClient, LiveApp
from tests.upstream import ScriptedUpstream

# Hypothesis: the "ci" profile (the default) is derandomized, so every run tries the same examples;
# HYPOTHESIS_PROFILE=explore draws new and more. Fixtures are shared by a test's examples on purpose.
_HYPOTHESIS = {
    "database": None,
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", derandomize=True, max_examples=100, **_HYPOTHESIS)
settings.register_profile("explore", max_examples=1000, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Settings the live server runs with: short timings so faults show within a test's patience.
LIVE_ENV = {
    "CHAT_DETACH_GRACE_S": "1",
    "CHAT_CHECKPOINT_S": "0.2",
    "CHAT_PING_S": "0.5",
    "CHAT_UPSTREAM_READ_TIMEOUT_S": "2",
    "CHAT_STALL_TIMEOUT_S": "1",
    "CHAT_UPSTREAM_RETRY_BASE_S": "0.05",
    "CHAT_DRAIN_S": "2",
    # Tests post far more than a person would; test_limits sets its own limits.
    "CHAT_USER_RATE_PER_MIN": "100000",
    "CHAT_USER_CONCURRENCY": "1000",
    "CHAT_MODEL": "scripted-model",
}


@pytest.fixture(scope="session")
def upstream_server():
    server = ScriptedUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server):
    """The scripted upstream, with no scripts or records left over from other tests."""
    upstream_server.reset()
    yield upstream_server
    upstream_server.reset()


@pytest.fixture(scope="session")
def live(upstream_server, tmp_path_factory):
    """The app under daphne, talking to the scripted upstream; users alice and bob exist."""
    app = LiveApp(tmp_path_factory.mktemp("live"), {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV})
    app.start()
    for name in ("alice", "bob"):
        app.create_user(name, PASSWORD)
    yield app
    app.stop()


@pytest.fixture
def cluster(upstream, tmp_path):
    """Two workers behind nginx on a PostgreSQL database and a Redis db of their own (tests/cluster.py)."""
    with Cluster(tmp_path, upstream.base_url, LIVE_ENV) as running:
        yield running


@pytest.fixture
def alice(live, upstream) -> ApiClient:
    client = live.client("alice", PASSWORD)
    yield client
    client.close()


@pytest.fixture
def bob(live, upstream) -> ApiClient:
    client = live.client("bob", PASSWORD)
    yield client
    client.close()


# --- in-process tests (Django's async test client) ------------------------------------------


@pytest.fixture
async def app_settings(settings, upstream):
    """Point the in-process app at the scripted upstream, with short timings."""
    settings.OPENAI_BASE_URL = upstream.base_url
    settings.CHAT_MODEL = "scripted-model"
    settings.CHAT_DETACH_GRACE_S = 1.0
    settings.CHAT_CHECKPOINT_S = 0.2
    settings.CHAT_UPSTREAM_READ_TIMEOUT_S = 2.0
    settings.CHAT_STALL_TIMEOUT_S = 1.0
    settings.CHAT_UPSTREAM_RETRY_BASE_S = 0.05
    settings.CHAT_USER_RATE_PER_MIN = 100_000
    settings.CHAT_USER_CONCURRENCY = 1000
    llm.reset_client()  # the client's pool belongs to one event loop: each test gets its own
    yield settings
    await llm.close_client()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("carol", password=PASSWORD)


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("dave", password=PASSWORD)


@pytest.fixture
async def client_for(app_settings):
    """Logged-in async clients; every generation they start is finished before teardown."""
    clients = []

    async def make(user, enforce_csrf_checks: bool = False) -> AsyncClient:
        client = AsyncClient(enforce_csrf_checks=enforce_csrf_checks)
        await client.aforce_login(user)
        clients.append(client)
        return client

    yield make
    for gen in list(generation._running.values()):
        gen.stop()
        await gen.wait(timeout=5)


@pytest.fixture(autouse=True)
def _fresh_rate_windows():
    """In one process the per-minute windows live in memory, keyed by user id, which a new test's
    user may share with an earlier test's."""
    limits._local.clear()
    yield
    limits._local.clear()
