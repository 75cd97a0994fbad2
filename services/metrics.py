"""Every metric the process exports, defined once, on the project's own registry.

Prometheus text format at ``GET /metrics`` (services/http/metrics.py). Names
carry the ``soulprint_`` prefix and base units (seconds, bytes, dollars).
No label ever names a person or a job: labels are stages, models, outcomes,
error classes, consumer groups and topics, all small closed sets.
Any module may import ``METRICS`` and count; nothing else defines a metric.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds, from a fast stage step to a full pass of a large export.
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_JOB_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_events = Counter("soulprint_stage_events", "Events a stage's agent handled, by outcome "
                                    "(ok, skipped, dead_letter, failed).", ["stage", "outcome"], registry=r)
        self.stage_duration = Histogram("soulprint_stage_duration_seconds", "Time a stage's agent spent on one "
                                        "event.", ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.time_to_quick_ready = Histogram("soulprint_time_to_quick_ready_seconds", "From the import's "
                                             "request to its quick soulprint.", buckets=_JOB_BUCKETS, registry=r)
        self.time_to_complete = Histogram("soulprint_time_to_complete_seconds", "From the import's request to "
                                          "its final soulprint (the full pass's sections, or the import's end "
                                          "when a small export skips the full pass).",
                                          buckets=_JOB_BUCKETS, registry=r)
        self.llm_requests = Counter("soulprint_llm_requests", "LLM requests, by model, task and outcome "
                                    "(paid, cached: served by the response cache, offline, error).",
                                    ["model", "task", "outcome"], registry=r)
        self.llm_tokens = Counter("soulprint_llm_tokens", "LLM tokens, by model and kind (input, output, "
                                  "cache_read, cache_write).", ["model", "kind"], registry=r)
        self.llm_cost = Counter("soulprint_llm_cost_dollars", "Estimated LLM cost in US dollars, by model.",
                                ["model"], registry=r)
        self.llm_errors = Counter("soulprint_llm_errors", "LLM errors, by model and error class.",
                                  ["model", "error"], registry=r)
        self.embedded_texts = Counter("soulprint_embedded_texts", "Texts embedded, by embedding space "
                                      "(provider/model/dimensions) and kind (document, query).",
                                      ["model", "kind"], registry=r)
        self.embedding_seconds = Histogram("soulprint_embedding_batch_seconds", "Time one embedding batch took, "
                                           "by embedding space.", ["model"], buckets=_STAGE_BUCKETS, registry=r)
        self.dead_letters = Counter("soulprint_dead_letters", "Messages sent to the dead-letter topic, by stage "
                                    "and error class.", ["stage", "error_class"], registry=r)
        self.consumer_lag = Gauge("soulprint_consumer_lag_messages", "Messages not yet consumed, by consumer "
                                  "group and topic (read at scrape time).", ["group", "topic"], registry=r)
        self.upload_bytes = Counter("soulprint_upload_bytes", "Bytes of exports received, by way (raw, "
                                    "multipart, tus).", ["way"], registry=r)
        self.webhook_deliveries = Counter("soulprint_webhook_deliveries", "Webhook delivery attempts, by outcome "
                                          "(ok, retry, gone, dead_letter).", ["outcome"], registry=r)
        self.http_requests = Counter("soulprint_http_requests", "HTTP requests, by route template and status.",
                                     ["route", "status"], registry=r)
        self.scrape_errors = Counter("soulprint_metrics_scrape_errors", "Scrapes that left a reading out, by "
                                     "source (consumer_lag: the broker did not answer in time).", ["source"],
                                     registry=r)
        self.http_duration = Histogram("soulprint_http_request_duration_seconds", "HTTP request time, by route "
                                       "template.", ["route"], buckets=_STAGE_BUCKETS, registry=r)


# The process's one set: every module counts here, /metrics exposes it.
METRICS = Metrics()
