"""Persistence: engine, tables, the durable work queues and migrations."""
