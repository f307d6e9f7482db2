"""Kafka plumbing shared by the stack and the pipeline: topics and client configuration."""

from .topics import TopicSpec, ensure_topics, topic_specs

__all__ = ["TopicSpec", "ensure_topics", "topic_specs"]
