"""``monitor --webhook URL``: a JSON summary POSTed when the status is drift or the run failed.

The hook is a notification, not part of the verdict: an unreachable hook, or one answering
with an error status, is one warning line and the exit code keeps its meaning (0 ok, 1 drift,
2 error). Webhook URLs usually carry their secret (Slack's and Teams' in the path, others as a
token in the query or as user:password), so a log line names the scheme and host only.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sentiment_pipeline.core.errors import ConfigError

log = logging.getLogger(__name__)

ENV = "SENTIMENT_MONITOR_WEBHOOK_URL"
NOTIFY = ("drift", "error")  # ok and insufficient_data need nobody


def shown(url: str) -> str:
    """``url`` as a log line may show it: scheme and host (and port), nothing that may be a secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<the webhook URL>"
    return f"{parts.scheme}://{host}{port}/…"


def checked(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else a :class:`ConfigError` naming the option."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{shown(url) if '://' in url else '(the webhook URL)'}: not an http(s) URL with a host; "
                          f"expected e.g. https://hooks.example.com/monitor (--webhook, {ENV} or monitor.webhook_url)")
    return url


def summary(result: dict | None, report: str | None, error: str | None = None) -> dict:
    """What the hook receives: status, message, failing checks, window, model version, report
    path. With ``error`` the status is ``error``, and what the run judged before it failed
    (storing its history, say) is kept, with that verdict as ``judged``."""
    result = result or {}
    failing = [{"name": c.get("name"), "value": c.get("value"), "threshold": c.get("threshold")}
               for c in result.get("checks", []) if isinstance(c, dict) and c.get("drift")]
    payload = {"source": "sentiment-pipeline monitor", "status": result.get("status"),
               "message": result.get("message"), "failing_checks": failing, "window": result.get("window"),
               "rows": result.get("rows"), "model_version": result.get("model_version"),
               "generated_at": result.get("generated_at"), "report": report}
    if error is not None:
        payload.update(status="error", message=error, judged=result.get("status"))
    return payload


def notify(url: str, payload: dict, timeout: float) -> bool:
    """POST ``payload`` as JSON when its status calls for it; True when the hook took it (2xx).
    Never raises for the hook's sake: a failure is one warning line."""
    import httpx

    if payload.get("status") not in NOTIFY:
        return False
    try:
        response = httpx.post(url, json=payload, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        # the exception's text can hold the URL: only its class is named
        log.warning("webhook %s: not delivered (%s: unreachable or no answer within %gs); the exit code is unchanged",
                    shown(url), type(exc).__name__, timeout)
        return False
    if not response.is_success:
        log.warning("webhook %s: not delivered (HTTP %d); the exit code is unchanged", shown(url), response.status_code)
        return False
    log.info("webhook %s: %s summary delivered (HTTP %d)", shown(url), payload["status"], response.status_code)
    return True
