"""Usage figures for the admin (/admin/chat/usage/): answers per day and model, all in the database.

An answer is an assistant message that has ended (not `streaming`), counted on the UTC day it
started. Per group: answers, tokens, time to first token p50/p95 (over answers that had a first
token), tokens/s (Σ tokens / Σ (duration - time to first token), over answers with both timings,
so long answers weigh more than short ones), endings by status and by error code.

Percentiles: PostgreSQL's `percentile_cont(p) WITHIN GROUP (ORDER BY ttft_ms)`, as an Aggregate
in the grouped query. Other databases (SQLite for `make run`) have no ordered-set aggregates: there
one more query per grouping numbers each group's answers by time to first token with window
functions (ROW_NUMBER, COUNT OVER) and returns only the one or two rows around each percentile,
which are interpolated the way percentile_cont does. Either way the query count is fixed, whatever
the number of messages.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from django.db import connection
from django.db.models import Aggregate, CharField, Count, F, FloatField, IntegerField, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber, Substr, TruncDate
from django.utils import timezone

from .models import Message

ENDINGS = [s for s in Message.Status.values if s != Message.Status.STREAMING]
PERCENTILES = {"ttft_p50": 0.5, "ttft_p95": 0.95}
TIMED = Q(ttft_ms__isnull=False, duration_ms__isnull=False, tokens__gt=0)


class PercentileCont(Aggregate):
    """PostgreSQL's continuous percentile: percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError(f"a percentile is a fraction in [0, 1], not {fraction!r}")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


@dataclass
class Figures:
    """One group's figures: a day and a model, or a day over every model (model None)."""

    day: date
    model: str | None
    answers: int = 0
    tokens: int = 0
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    tokens_per_s: float | None = None
    endings: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    start: date
    end: date  # inclusive
    model: str | None
    by_model: list[Figures]  # per day and model, by day then model
    by_day: list[Figures]  # per day over the models shown, every day of the range (empty days too)
    models: list[str]  # every model with answers in the range, for the filter
    endings: dict[str, int]  # over the range
    errors: dict[str, int]  # over the range, most frequent first

    @property
    def answers(self) -> int:
        return sum(f.answers for f in self.by_day)

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.by_day)


def answers_between(start: datetime, end: datetime) -> QuerySet[Message]:
    return Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=start, created_at__lt=end).exclude(
        status=Message.Status.STREAMING
    )


def usage_report(*, days: int = 30, model: str | None = None, today: date | None = None) -> Report:
    """The last `days` UTC days up to `today` (included), optionally one model's answers only."""
    today = today or timezone.now().astimezone(UTC).date()
    start = today - timedelta(days=days - 1)
    in_range = answers_between(_midnight(start), _midnight(today + timedelta(days=1)))
    answers = in_range.filter(model=model) if model else in_range
    by_model = grouped_figures(answers, by_model=True)
    if model:  # the filter still offers every model of the range
        models = list(in_range.exclude(model="").values_list("model", flat=True).distinct().order_by("model"))
    else:
        models = sorted({f.model for f in by_model if f.model})
    by_day = {f.day: f for f in grouped_figures(answers, by_model=False)}
    groups = {(f.day, f.model): f for f in by_model}
    for (day, name), errors in error_counts(answers).items():
        groups[(day, name)].errors = errors
        for code, n in errors.items():
            by_day[day].errors[code] = by_day[day].errors.get(code, 0) + n
    every_day = [by_day.get(start + timedelta(days=i)) or Figures(start + timedelta(days=i), None) for i in range(days)]
    endings = {s: sum(f.endings.get(s, 0) for f in every_day) for s in ENDINGS}
    errors: dict[str, int] = defaultdict(int)
    for f in every_day:
        for code, n in f.errors.items():
            errors[code] += n
    return Report(
        start=start,
        end=today,
        model=model,
        by_model=by_model,
        by_day=every_day,
        models=models,
        endings=endings,
        errors=dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
    )


def grouped_figures(answers: QuerySet[Message], *, by_model: bool) -> list[Figures]:
    """One query (two without PostgreSQL) for every group's figures."""
    keys = ["day", "model"] if by_model else ["day"]
    aggregates = {
        "n_answers": Count("id"),
        "n_tokens": Sum("tokens", default=0),
        "timed_tokens": Sum("tokens", filter=TIMED),
        "timed_ms": Sum(F("duration_ms") - F("ttft_ms"), filter=TIMED, output_field=IntegerField()),
        **{f"ending_{s}": Count("id", filter=Q(status=s)) for s in ENDINGS},
    }
    native = connection.vendor == "postgresql"
    if native:
        aggregates |= {name: PercentileCont("ttft_ms", p) for name, p in PERCENTILES.items()}
    rows = answers.annotate(day=utc_day()).values(*keys).annotate(**aggregates).order_by(*keys)
    percentiles = {} if native else window_percentiles(answers, keys)
    found = []
    for row in rows:
        row["day"] = as_date(row["day"])
        key = tuple(row[k] for k in keys)
        f = Figures(
            day=row["day"],
            model=row["model"] if by_model else None,
            answers=row["n_answers"],
            tokens=row["n_tokens"],
            endings={s: row[f"ending_{s}"] for s in ENDINGS},
        )
        for name in PERCENTILES:
            setattr(f, name, row[name] if native else percentiles.get(key, {}).get(name))
        if row["timed_ms"]:
            f.tokens_per_s = round(row["timed_tokens"] * 1000 / row["timed_ms"], 1)
        found.append(f)
    return found


def window_percentiles(answers: QuerySet[Message], keys: list[str]) -> dict[tuple, dict[str, float]]:
    """percentile_cont of ttft_ms per group, where the database has window functions but no
    ordered-set aggregates: rank each group's answers, fetch only the rows around each percentile."""
    partition = [F(k) for k in keys]
    ranked = (
        answers.filter(ttft_ms__isnull=False)
        .annotate(day=utc_day())
        .annotate(
            rank=Window(RowNumber(), partition_by=partition, order_by=[F("ttft_ms").asc(), F("id").asc()]),
            size=Window(Count("id"), partition_by=partition),
        )
    )
    # percentile_cont(p) over n sorted values v[0..n-1]: h = (n - 1) p, then v[⌊h⌋] + (h - ⌊h⌋)(v[⌊h⌋+1] - v[⌊h⌋]);
    # the fraction p = num/den keeps ⌊h⌋ in integer arithmetic: ((n - 1) num) / den, ranks from 1.
    fractions = {name: Fraction(p).limit_denominator(1000) for name, p in PERCENTILES.items()}
    wanted = Q()
    for frac in fractions.values():
        low = (F("size") - 1) * frac.numerator / frac.denominator
        wanted |= Q(rank__gte=low + 1, rank__lte=low + 2)
    values: dict[tuple, dict[int, int]] = defaultdict(dict)
    sizes: dict[tuple, int] = {}
    for row in ranked.filter(wanted).values(*keys, "rank", "size", "ttft_ms"):
        if "day" in row:
            row["day"] = as_date(row["day"])
        key = tuple(row[k] for k in keys)
        values[key][row["rank"] - 1] = row["ttft_ms"]
        sizes[key] = row["size"]
    result: dict[tuple, dict[str, float]] = {}
    for key, at in values.items():
        steps = sizes[key] - 1
        result[key] = {}
        for name, frac in fractions.items():
            low, rest = divmod(steps * frac.numerator, frac.denominator)
            value = float(at[low])
            if rest:
                value += (at[low + 1] - at[low]) * rest / frac.denominator
            result[key][name] = value
    return result


def error_counts(answers: QuerySet[Message]) -> dict[tuple[date, str], dict[str, int]]:
    """{(day, model): {error code: answers}}, in one query."""
    rows = (
        answers.exclude(error_code="")
        .annotate(day=utc_day())
        .values("day", "model", "error_code")
        .annotate(n=Count("id"))
        .order_by("day", "model", "-n", "error_code")
    )
    found: dict[tuple[date, str], dict[str, int]] = defaultdict(dict)
    for row in rows:
        found[(as_date(row["day"]), row["model"])][row["error_code"]] = row["n"]
    return found


def utc_day():
    """The UTC day an answer started, as the database computes it."""
    if connection.vendor == "sqlite":
        # Stored as UTC text, "YYYY-MM-DD HH:MM:SS.ffffff": its first ten characters, where TruncDate
        # would call a Python function for every row (several times slower on 100,000 messages).
        return Substr("created_at", 1, 10, output_field=CharField())
    return TruncDate("created_at", tzinfo=UTC)


def as_date(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)
