#!/usr/bin/env python3
"""The official OpenAI Python client (`pip install openai`) calling a model server through
infergate: the API's predict_url is the client's base_url, and the app's AppCode rides along
in a default header. Streams one chat completion to stdout.

Usage: PREDICT_URL=http://127.0.0.1:8080/v1/infers/<service id> APP_CODE=<AppCode> \\
         python3 examples/openai-chat.py "Hello, model"
"""

import os
import sys

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["PREDICT_URL"],
    # The client insists on a key and sends it as `Authorization: Bearer …`; the gateway
    # authenticates the AppCode and leaves other schemes of that header to the upstream.
    api_key=os.environ.get("OPENAI_API_KEY", "unused"),
    default_headers={"X-Apig-AppCode": os.environ["APP_CODE"]},
)
stream = client.chat.completions.create(
    model=os.environ.get("MODEL", "demo"),
    messages=[{"role": "user", "content": " ".join(sys.argv[1:]) or "Hello from the OpenAI client"}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
