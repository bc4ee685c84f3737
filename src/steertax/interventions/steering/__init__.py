"""Steering: contrast pairs, activation capture, extraction, the steering vector and its exports, the
hooks that add it to a model, and the steering intervention over a grid of strengths."""
