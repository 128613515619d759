"""A conversation's settings (title, model, system prompt), search, and the upstream's model list.

Search is PostgreSQL full-text search where the database is PostgreSQL (prefix matching, so that
results come while a word is still being typed) and a plain case-insensitive `icontains` on SQLite.
The model list is the upstream's `GET /v1/models`, kept per process for CHAT_MODELS_CACHE_S.
"""

import logging
import re
import time
from dataclasses import dataclass

import openai
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from . import llm, selectors
from .models import Conversation, Message
from .services import ServiceError, _clean_title, clean_text

logger = logging.getLogger(__name__)

EDITABLE = ("title", "model", "system_prompt")


# --- settings of one conversation -----------------------------------------------------------------


async def conversation_update(*, user: AbstractBaseUser, id: int, data: dict) -> Conversation:
    """Change any of title, model (blank: the default) and system prompt (blank: the default)."""
    conversation = await sync_to_async(selectors.conversation_get)(user=user, id=id)  # 404 first
    if unknown := sorted(set(data) - set(EDITABLE)):
        raise ServiceError("unknown_field", f"Only {', '.join(EDITABLE)} can be changed, not {', '.join(unknown)}.")
    changes: dict[str, str] = {}
    if "title" in data:
        changes["title"] = _clean_title(data["title"])
    if "model" in data:
        changes["model"] = await _clean_model(data["model"])
    if "system_prompt" in data:
        changes["system_prompt"] = _clean_system_prompt(data["system_prompt"])
    if changes:
        # Only these columns: an answer posted meanwhile may set the title or bump updated_at,
        # and a rename or a new model is not activity that should move the conversation up.
        await Conversation.objects.filter(pk=conversation.pk).aupdate(**changes)
        await conversation.arefresh_from_db()
    return conversation


async def _clean_model(model: object) -> str:
    if model is None:
        return ""
    if not isinstance(model, str):
        raise ServiceError("invalid_model", "model must be a string.")
    model = model.strip()
    if not model or model == settings.CHAT_MODEL:
        return ""  # the default, which follows CHAT_MODEL if that changes
    if model not in await model_ids() and model not in await model_ids(refresh=True):
        raise ServiceError("unknown_model", "The model server does not offer that model; see /api/models/.")
    return model


def _clean_system_prompt(prompt: object) -> str:
    return clean_text(prompt, "system_prompt", settings.CHAT_MAX_SYSTEM_PROMPT_CHARS)


# --- search ---------------------------------------------------------------------------------------

# At most this many conversations, and this many matching messages in each, per search.
SEARCH_CONVERSATIONS = 50
SEARCH_MATCHES = 3
SNIPPET_CHARS = 160  # a snippet's length, about; the match sits in its first half
MAX_QUERY_CHARS = 200
# No stemming, no stop words: conversations are in any language, and a prefix match (below) finds
# "runs" and "running" from "run" anyway.
SEARCH_CONFIG = "simple"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Found:
    conversation: Conversation
    matches: list[dict]  # [{"message_id", "snippet"}], oldest first; empty when only the title matched


def clean_query(q: object) -> str:
    if not isinstance(q, str):
        raise ServiceError("invalid_query", "q must be text.")
    if "\x00" in q:
        raise ServiceError("invalid_query", "q must not contain NUL characters (U+0000).")
    q = " ".join(q.split())
    if len(q) > MAX_QUERY_CHARS:
        raise ServiceError("query_too_long", f"q is longer than {MAX_QUERY_CHARS} characters.")
    return q


def conversation_search(*, user: AbstractBaseUser, q: str) -> list[Found]:
    """The user's conversations whose title or messages match `q`, newest first, with snippets."""
    q = clean_query(q)
    if not q:
        return []
    if connection.vendor == "postgresql":
        return _search_postgresql(user, q)
    return _search_plain(user, q)


def _search_plain(user: AbstractBaseUser, q: str) -> list[Found]:
    hits = Message.objects.owned_by(user).filter(content__icontains=q)
    conversations = _newest(user, Q(title__icontains=q) | Q(pk__in=hits.values("conversation_id")))
    rows = _first_matches(hits.filter(conversation__in=[c.pk for c in conversations]))
    snippets: dict[int, list[dict]] = {}
    for message_id, conversation_id, content in rows.values_list("id", "conversation_id", "content"):
        snippets.setdefault(conversation_id, []).append({"message_id": message_id, "snippet": snippet(content, q)})
    return [Found(c, snippets.get(c.pk, [])) for c in conversations]


def _search_postgresql(user: AbstractBaseUser, q: str) -> list[Found]:
    from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchVector

    words = _WORD.findall(q)
    if not words:  # punctuation only: nothing full-text search can match
        return []
    # Every word, each as a prefix: "quant comp" finds "quantum computing".
    query = SearchQuery(" & ".join(f"'{w}':*" for w in words), config=SEARCH_CONFIG, search_type="raw")
    hits = (
        Message.objects.owned_by(user)
        .annotate(document=SearchVector("content", config=SEARCH_CONFIG))
        .filter(document=query)
    )
    title_hits = (
        Conversation.objects.owned_by(user)
        .annotate(document=SearchVector("title", config=SEARCH_CONFIG))
        .filter(document=query)
    )
    conversations = _newest(user, Q(pk__in=title_hits.values("pk")) | Q(pk__in=hits.values("conversation_id")))
    ids = list(_first_matches(hits.filter(conversation__in=[c.pk for c in conversations])).values_list("id", flat=True))
    # Headlines for those few messages only (ts_headline reads the whole text: not for every hit).
    rows = (
        Message.objects.filter(pk__in=ids)
        .annotate(
            headline=SearchHeadline(
                "content",
                query,
                config=SEARCH_CONFIG,
                start_sel="",
                stop_sel="",
                max_words=24,
                min_words=12,
                short_word=1,
                max_fragments=1,
                fragment_delimiter=" … ",
            )
        )
        .order_by("id")
    )
    snippets: dict[int, list[dict]] = {}
    for message_id, conversation_id, headline in rows.values_list("id", "conversation_id", "headline"):
        text = _bounded(" ".join(headline.split()))
        snippets.setdefault(conversation_id, []).append({"message_id": message_id, "snippet": text})
    return [Found(c, snippets.get(c.pk, [])) for c in conversations]


def _newest(user: AbstractBaseUser, match: Q) -> list[Conversation]:
    return list(Conversation.objects.owned_by(user).filter(match).order_by("-updated_at", "-id")[:SEARCH_CONVERSATIONS])


def _first_matches(hits: QuerySet[Message]) -> QuerySet[Message]:
    """The first SEARCH_MATCHES matching messages of each conversation, in one query."""
    ranked = hits.annotate(
        rank=Window(RowNumber(), partition_by=[F("conversation_id")], order_by=[F("created_at").asc(), F("id").asc()])
    )
    return ranked.filter(rank__lte=SEARCH_MATCHES).order_by("created_at", "id")


def snippet(content: str, q: str) -> str:
    """Plain text around the first occurrence of `q` (case-insensitive), on one line, bounded."""
    text = " ".join(content.split())
    at = text.casefold().find(q.casefold())
    if at < 0:  # casefold changed lengths (ß -> ss...): any place will do, the start is one
        at = 0
    start = max(0, at - SNIPPET_CHARS // 3)
    if start:  # begin at a word
        space = text.find(" ", start, at)
        start = space + 1 if space >= 0 else start
    return _bounded(text[start:], cut_before=bool(start))


def _bounded(text: str, *, cut_before: bool = False) -> str:
    if len(text) > SNIPPET_CHARS:
        cut = text.rfind(" ", SNIPPET_CHARS // 2, SNIPPET_CHARS)
        text = text[: cut if cut > 0 else SNIPPET_CHARS].rstrip() + "…"
    return ("…" + text) if cut_before else text


# --- the upstream's models ------------------------------------------------------------------------

MODELS_TIMEOUT_S = 5.0
MAX_MODELS = 500
# Keyed by base URL (settings may point elsewhere, in tests): (fetched at, model ids).
_models: dict[str, tuple[float, list[str]]] = {}


async def models_list(*, refresh: bool = False) -> dict:
    """`{"models": [{"id"}], "default"}`; the default is always offered, first."""
    return {"models": [{"id": m} for m in await model_ids(refresh=refresh)], "default": settings.CHAT_MODEL}


async def model_ids(*, refresh: bool = False) -> list[str]:
    """The upstream's model ids, cached for CHAT_MODELS_CACHE_S; refresh=True asks again now."""
    key = settings.OPENAI_BASE_URL
    cached = _models.get(key)
    if cached and not refresh and time.monotonic() - cached[0] < settings.CHAT_MODELS_CACHE_S:
        return cached[1]
    ids = await _fetch_model_ids()
    _models[key] = (time.monotonic(), ids)
    return ids


async def _fetch_model_ids() -> list[str]:
    try:
        page = await llm.client().models.list(timeout=MODELS_TIMEOUT_S)
        listed = [m.id for m in page.data if isinstance(getattr(m, "id", None), str)]
    except openai.APIStatusError as exc:
        if exc.status_code != 404:
            logger.warning("upstream refused to list models: HTTP %s", exc.status_code)
            raise _unavailable(f"The model server did not list its models (HTTP {exc.status_code}).") from exc
        listed = []  # a server without /v1/models: it serves the configured model
    except openai.APIError as exc:  # unreachable, timed out, or an answer that is not a model list
        logger.warning("upstream %s: cannot list models: %s", settings.OPENAI_BASE_URL, exc.__cause__ or exc)
        raise _unavailable("The model server is unreachable.") from exc
    ids = [settings.CHAT_MODEL]
    for model in listed:
        if model and model not in ids and len(model) <= 200:
            ids.append(model)
    return ids[:MAX_MODELS]


def _unavailable(message: str) -> ServiceError:
    return ServiceError("upstream_unavailable", message, 503, retry_after=5)
