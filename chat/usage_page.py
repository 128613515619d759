"""The admin's usage page, /admin/chat/usage/ (staff only: routed through admin.site.admin_view)."""

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from . import charts, usage

DAY_CHOICES = [7, 30, 90, 365]
ENDING_COLORS = {"complete": "#5b9a4f", "cancelled": "#e0a030", "interrupted": "#8a8a8a", "error": "#ba2121"}


def usage_page(request: HttpRequest) -> TemplateResponse:
    days = _days(request.GET.get("days"))
    model = request.GET.get("model") or None
    report = usage.usage_report(days=days, model=model)
    labels = [f"{f.day:%m-%d}" for f in report.by_day]
    figures = report.by_day
    context = {
        **admin.site.each_context(request),
        "title": "Usage",
        "report": report,
        "days": days,
        "day_choices": sorted({*DAY_CHOICES, days}),
        "endings": usage.ENDINGS,
        "charts": [
            charts.bar_chart(
                name="answers",
                title="Answers per day, by ending",
                labels=labels,
                series=[
                    charts.Series(s, [f.endings.get(s, 0) for f in figures], ENDING_COLORS[s]) for s in usage.ENDINGS
                ],
            ),
            charts.bar_chart(
                name="tokens",
                title="Tokens per day",
                labels=labels,
                series=[charts.Series("tokens", [f.tokens for f in figures])],
            ),
            charts.line_chart(
                name="ttft",
                title="Time to first token (ms), p50 and p95",
                labels=labels,
                series=[
                    charts.Series("p50", [f.ttft_p50 for f in figures], "#417690"),
                    charts.Series("p95", [f.ttft_p95 for f in figures], "#ba2121"),
                ],
                unit=" ms",
            ),
            charts.line_chart(
                name="tokens_per_s",
                title="Tokens per second",
                labels=labels,
                series=[charts.Series("tokens/s", [f.tokens_per_s for f in figures], "#5b9a4f")],
            ),
        ],
    }
    return TemplateResponse(request, "admin/chat/usage.html", context)


def _days(value: str | None) -> int:
    try:
        return min(max(int(value), 1), 366) if value else 30
    except ValueError:
        return 30
