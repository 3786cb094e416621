"""The HTTP/1.1 and WebSocket server that `gophergate serve` runs the ASGI app on."""
