"""Sink stage: Kafka to ClickHouse, and the query API that shares the store's process."""
