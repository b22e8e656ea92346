"""An ASGI app for tests/config/test_server.py: answers with how the request body arrived."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    pieces = []
    while True:
        message = await receive()
        pieces.append(len(message.get("body", b"")))
        if not message.get("more_body"):
            break
    body = json.dumps({"pieces": pieces}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
