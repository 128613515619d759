"""The reference relay: what the common minimal FastAPI example does, for bench/relay.py to compare.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... uvicorn bench.reference_relay:app

`POST /chat` with `{"content": "..."}` answers `text/event-stream`: one `data: {"text": ...}` event
per upstream token, then `event: done`. A `StreamingResponse` over `AsyncOpenAI` with `stream=True`,
nothing stored, no ids, no pings, no cancel call: a user stops by closing the connection. Written
as the articles write it on purpose, not tuned: it is the yardstick for chatsite's own relay.
"""

import json
import os

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

client = AsyncOpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
MODEL = os.environ.get("CHAT_MODEL", "bench-model")

app = FastAPI()


class Prompt(BaseModel):
    content: str


@app.post("/chat")
async def chat(prompt: Prompt) -> StreamingResponse:
    async def events():
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt.content}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield f"data: {json.dumps({'text': chunk.choices[0].delta.content})}\n\n"
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
