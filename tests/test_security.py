"""Hardening: login throttling (django-axes), the headers every page sends, and the production settings
(HTTPS behind a proxy, no start-up on the public development key)."""

import os
import subprocess
import sys

import httpx
import pytest
from django.core.management.utils import get_random_secret_key

from chat import cluster as chat_cluster
from tests.conftest import LIVE_ENV
from tests.live import PASSWORD, ROOT, LiveApp, free_port

WRONG = "not-the-password"
LIMIT = 5  # CHAT_LOGIN_FAILURES' default, which the live server runs with
LOCKED_MESSAGE = "Too many failed sign-in attempts. Please wait 15 minutes before trying again."


def attempt(
    base_url: str, username: str, password: str, *, source: str = "127.0.0.1", headers=None
) -> tuple[httpx.Response, bool]:
    """One sign-in through the login page, as a new browser at address `source` would: the answer,
    and whether the browser is signed in afterwards (the chat page shows, not the login page)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base_url, transport=transport, timeout=10, headers=headers or {}) as http:
        http.get("/accounts/login/").raise_for_status()
        r = http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
            headers={"Referer": f"{base_url}/accounts/login/"},
        )
        return r, http.get("/").status_code == 200


def fail(base_url: str, username: str, times: int, **kwargs) -> list[int]:
    return [attempt(base_url, username, WRONG, **kwargs)[0].status_code for _ in range(times)]


def assert_hardened(response: httpx.Response) -> None:
    """No inline or eval'd script, no MIME sniffing, no framing by other sites."""
    csp = {
        name: values
        for name, *values in (d.split() for d in response.headers["content-security-policy"].split(";") if d.strip())
    }
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, csp
    assert csp["frame-ancestors"] == ["'none'"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def people(live):
    """Users of this module's own, so that lockouts here never touch the shared alice and bob."""
    names = ["lock_lucy", "lock_lena", "lock_otto", "lock_rita"]
    live.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; U = get_user_model()\n"
        + "".join(f"U.objects.create_user({n!r}, password={PASSWORD!r})\n" for n in names),
    )
    return live


# --- login throttling over a real server ----------------------------------------------------


def test_failed_logins_lock_the_account_out_even_with_the_right_password(people):
    statuses = fail(people.base_url, "lock_lucy", LIMIT)
    assert statuses == [200] * (LIMIT - 1) + [429]
    r, signed_in = attempt(people.base_url, "lock_lucy", PASSWORD)
    assert r.status_code == 429 and not signed_in
    assert LOCKED_MESSAGE in r.text
    assert 'class="auth-card"' in r.text  # the login page's look, not a bare error
    assert int(r.headers["retry-after"]) == 15 * 60
    assert_hardened(r)


def test_a_lockout_holds_only_for_that_username_and_address(people):
    assert fail(people.base_url, "lock_lena", LIMIT, source="127.0.0.2")[-1] == 429
    assert attempt(people.base_url, "lock_lena", PASSWORD, source="127.0.0.2")[0].status_code == 429
    # The same user from another address, and another user from the locked address, sign in.
    assert attempt(people.base_url, "lock_lena", PASSWORD, source="127.0.0.1")[1]
    assert attempt(people.base_url, "lock_otto", PASSWORD, source="127.0.0.2")[1]


def test_a_successful_login_starts_the_count_again(people):
    assert fail(people.base_url, "lock_rita", LIMIT - 1) == [200] * (LIMIT - 1)
    assert attempt(people.base_url, "lock_rita", PASSWORD)[1]
    # Counted on from before, the first of these would lock her out.
    assert fail(people.base_url, "lock_rita", LIMIT - 1) == [200] * (LIMIT - 1)
    assert attempt(people.base_url, "lock_rita", PASSWORD)[1]


def test_behind_nginx_the_lockout_follows_the_address_nginx_saw(cluster):
    """CHAT_PROXY_COUNT=1: the client's address is the one nginx appended, never what the client wrote."""
    cluster.create_user("nadia")
    forged = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(LIMIT + 1)]
    statuses = [attempt(cluster.base_url, "nadia", WRONG, source="127.0.0.2", headers=h)[0].status_code for h in forged]
    assert statuses == [200] * (LIMIT - 1) + [429, 429]
    assert attempt(cluster.base_url, "nadia", PASSWORD, source="127.0.0.2")[0].status_code == 429
    assert attempt(cluster.base_url, "nadia", PASSWORD, source="127.0.0.1")[1]


# --- the other ways in ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_login_is_throttled_too(client, django_user_model):
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    for _ in range(LIMIT - 1):
        assert client.post("/admin/login/", {"username": "root", "password": WRONG}).status_code == 200
    assert client.post("/admin/login/", {"username": "root", "password": WRONG}).status_code == 429
    r = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert r.status_code == 429 and LOCKED_MESSAGE in r.content.decode()
    assert client.get("/admin/").status_code == 302  # still signed out


@pytest.mark.django_db
def test_the_test_clients_login_works_without_a_request(client, django_user_model):
    django_user_model.objects.create_user("carol", password=PASSWORD)
    assert not client.login(username="carol", password=WRONG)
    assert client.login(username="carol", password=PASSWORD)
    assert client.get("/").status_code == 200


# --- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/accounts/login/"])
def test_pages_forbid_inline_scripts_sniffing_and_framing(alice, path):
    r = alice.http.get(path)
    assert r.status_code == 200
    assert_hardened(r)


# --- production settings --------------------------------------------------------------------


def production_env(**overrides: str) -> dict[str, str]:
    """This environment with DJANGO_DEBUG=0 and no DJANGO_SECRET_KEY unless given."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    return {**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "DJANGO_DEBUG": "0", **overrides}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_deploy_check_is_clean_behind_https_with_a_real_key():
    env = production_env(DJANGO_HTTPS="1", DJANGO_SECRET_KEY=get_random_secret_key())
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_deploy_check_names_what_plain_http_lacks():
    result = manage(
        production_env(DJANGO_SECRET_KEY=get_random_secret_key()), "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode != 0
    for missing in ("SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        assert missing in result.stderr


def test_without_debug_the_app_refuses_the_development_key():
    """A worker started with DJANGO_DEBUG=0 and no DJANGO_SECRET_KEY exits at once, saying why."""
    result = subprocess.run(
        chat_cluster.worker_command(free_port()),
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set, and DJANGO_DEBUG=0" in result.stderr


def test_https_redirects_plain_http_and_keeps_cookies_to_https(upstream_server, tmp_path):
    """DJANGO_HTTPS=1 behind a proxy that sends X-Forwarded-Proto, as nginx.conf.template does."""
    with LiveApp(tmp_path, {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV, "DJANGO_HTTPS": "1"}) as app:
        app.create_user("hana", PASSWORD)
        host = f"127.0.0.1:{app.port}"
        plain = httpx.get(f"{app.base_url}/accounts/login/")
        assert plain.status_code == 301 and plain.headers["location"] == f"https://{host}/accounts/login/"
        assert httpx.get(f"{app.base_url}/healthz").status_code == 200  # probes call the worker directly

        tls = {"X-Forwarded-Proto": "https"}
        page = httpx.get(f"{app.base_url}/accounts/login/", headers=tls)
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        csrf = page.cookies["csrftoken"]
        assert "secure" in page.headers["set-cookie"].lower()
        login = httpx.post(
            f"{app.base_url}/accounts/login/",
            data={"username": "hana", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
            headers={**tls, "Cookie": f"csrftoken={csrf}", "Referer": f"https://{host}/accounts/login/"},
        )
        assert login.status_code == 302
        session = [c for c in login.headers.get_list("set-cookie") if c.startswith("sessionid=")]
        assert session and "secure" in session[0].lower()
