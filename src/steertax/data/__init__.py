"""Bundled data files (each folder keeps its SOURCE.md and LICENSE) and small readers for them."""

from steertax.data.readers import data_path, read_csv, read_json, read_jsonl

__all__ = ["data_path", "read_json", "read_jsonl", "read_csv"]
