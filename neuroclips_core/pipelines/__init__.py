"""Inference pipelines: trained models and foundation models -> the book's artifacts (blurry videos, keyframes,
captions, videos)."""
