"""A real answer from the embedded SmolLM2-135M model, streamed through the app."""

import pytest
from django.conf import settings

from chat import embedded
from tests.live import LiveApp, free_port, read_all, text_of

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def model_port():
    port = free_port()
    proc = embedded.start(
        host="127.0.0.1",
        port=port,
        alias=settings.CHAT_EMBEDDED_MODEL,
    )
    yield port
    embedded.stop(proc)


def test_the_model_ships_inside_the_installed_package():
    path = embedded.model_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "site-packages" in str(path) or "dist-packages" in str(path)


def test_embedded_model_answers_token_by_token_through_the_app(model_port, tmp_path):
    env = {"OPENAI_BASE_URL": "", "CHAT_EMBEDDED_PORT": str(model_port), "CHAT_MAX_TOKENS": "48"}
    with LiveApp(tmp_path, env) as app:
        client = app.new_client("frank")
        cid = client.new_conversation()
        with client.post_stream(cid, "Name three colours of the rainbow.") as r:
            events = read_all(r)
        stored = client.answer(cid)
    assert stored["content"] == text_of(events) and stored["content"].strip()
    tokens = [e for e in events if e.event == "token"]
    done = events[-1].data
    assert events[0].data["model"] == settings.CHAT_EMBEDDED_MODEL
    assert done["status"] == "complete", events[-3:]
    assert len(tokens) >= 5  # many small events, not one lump
    # An event may carry several upstream chunks that arrived in one read; stats count chunks.
    assert done["stats"]["tokens"] >= len(tokens) and done["stats"]["tokens_per_s"] > 0
