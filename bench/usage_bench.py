"""Usage page benchmark: /admin/chat/usage/ over 100,000 messages. Not a test; prints timings.

    .venv/bin/python -m bench.usage_bench [--messages 100000] [--loads 7] [--sqlite]

Seeds a database of its own (PostgreSQL on 127.0.0.1, as the tests use; --sqlite: a temporary
SQLite file, the `make run` default) with bulk_create: half questions, half answers spread over
the last 90 days, three models, every ending, some errors. Then loads the page as a staff member
through Django's test client (the whole view: queries and template) and prints the median of
--loads loads, for the default 30 days, for 90 days (every message) and for one model. The
database is dropped afterwards.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
MODELS = ["SmolLM2-135M-Instruct", "qwen2.5-7b", "llama-3.1-8b"]
ERRORS = ["upstream_timeout", "upstream_unavailable", "upstream_error", "upstream_disconnected"]


def seed(messages: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from chat.models import Conversation, Message

    rng = random.Random(10)
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"user{i}", password="!") for i in range(100)]
    )
    conversations = Conversation.objects.bulk_create(
        [Conversation(owner=rng.choice(users), title=f"conversation {i}") for i in range(messages // 20)],
        batch_size=2000,
    )
    batch: list[Message] = []
    for i in range(messages // 2):
        conversation = conversations[i % len(conversations)]
        batch.append(Message(conversation=conversation, role="user", content="a question " * 5))
        status = rng.choices(["complete", "cancelled", "interrupted", "error"], [90, 5, 2, 3])[0]
        ttft = None if status == "interrupted" and rng.random() < 0.5 else int(rng.lognormvariate(5.5, 0.6))
        tokens = 0 if ttft is None else rng.randint(5, 800)
        batch.append(
            Message(
                conversation=conversation,
                role="assistant",
                content="an answer " * 30,
                status=status,
                model=rng.choice(MODELS),
                ttft_ms=ttft,
                tokens=tokens,
                duration_ms=None if ttft is None else ttft + tokens * rng.randint(8, 40),
                finish_reason={"complete": "stop", "cancelled": "cancelled"}.get(status, ""),
                error_code=rng.choice(ERRORS) if status == "error" else "",
                chunks=[4] * min(tokens, 50),
            )
        )
        if len(batch) >= 5000:
            Message.objects.bulk_create(batch)
            batch = []
    Message.objects.bulk_create(batch)
    # auto_now_add stamped them all now: spread them over the last 90 days, a question just before its answer.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE chat_message SET created_at = now() - (id / 2 % 90) * interval '1 day'"
                " - (id / 2 % 1440) * interval '1 minute' + (id % 2) * interval '1 second'"
            )
            # What autovacuum does soon after: statistics, and the visibility map that index-only scans need.
            connection.set_autocommit(True)
            cursor.execute("VACUUM ANALYZE chat_message")
        else:
            cursor.execute(
                "UPDATE chat_message SET created_at = strftime('%Y-%m-%d %H:%M:%f', 'now', -(id / 2 % 90) || ' days',"
                " -(id / 2 % 1440) || ' minutes', (id % 2) || ' seconds')"
            )
            cursor.execute("ANALYZE")


def time_page(client, params: dict, loads: int) -> tuple[float, int]:
    timings = []
    for _ in range(loads + 1):  # the first one warms up
        started = time.perf_counter()
        response = client.get("/admin/chat/usage/", params)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return statistics.median(timings[1:]) * 1000, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead of PostgreSQL")
    parser.add_argument("--queries", action="store_true", help="also print each query of one load, with its time")
    args = parser.parse_args()

    import psycopg

    tmp = tempfile.TemporaryDirectory()
    name = f"chatsite_bench_usage_{uuid.uuid4().hex[:8]}"
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp.name}/bench.sqlite3"
    else:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"{PG_SERVER}/{name}"
        os.environ["DATABASE_POOL_SIZE"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        seed(args.messages)
        print(f"{connection.vendor}: seeded {args.messages:,} messages in {time.perf_counter() - started:.1f} s")
        staff = get_user_model().objects.create_superuser("bench-admin", password="bench-password-123")
        client = Client(HTTP_HOST="localhost")
        client.force_login(staff)
        for label, params in [
            ("last 30 days (default)", {}),
            ("last 90 days (every message)", {"days": "90"}),
            ("last 30 days, one model", {"model": MODELS[1]}),
        ]:
            ms, size = time_page(client, params, args.loads)
            print(f"  {label:<32} median {ms:7.1f} ms over {args.loads} loads ({size / 1024:.0f} kB)")
            if args.queries:
                with CaptureQueriesContext(connection) as queries:
                    client.get("/admin/chat/usage/", params)
                for q in queries:
                    print(f"    {float(q['time']) * 1000:7.1f} ms  {q['sql'][:150]}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.sqlite:
            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as db:
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        tmp.cleanup()


if __name__ == "__main__":
    main()
