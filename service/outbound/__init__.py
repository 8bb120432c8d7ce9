"""Outbound webhooks: endpoints a user registers, the signed deliveries a solve's end queues for
them, and the dispatcher (in the worker process) that sends them."""
