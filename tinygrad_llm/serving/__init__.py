"""Serving a trained GPT over HTTP: continuous dynamic batching, streaming, backpressure (chapter 9, Q22)."""
