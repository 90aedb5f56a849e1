"""The distributed mode: masters and satellites meeting on NATS JetStream (docs/distributed.md)."""
